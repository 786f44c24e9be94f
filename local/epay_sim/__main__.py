"""Run the ePay simulator standalone: ``python -m local.epay_sim --host 127.0.0.1 --port 8081``."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from .cards import TEST_CLIENT_ID, TEST_TERMINAL_ID
from .simulator import EpaySimulator
from .state import Terminal, checked_terminals

_TERMINAL_FLAGS = {"single-stage": "single_stage", "no-3ds": "three_ds"}


def terminal_arg(text: str) -> Terminal:
    """``--terminal UUID:CODE[:single-stage][:no-3ds]`` as a ``Terminal``."""
    uuid, _, rest = text.partition(":")
    code, *flags = rest.split(":") if rest else [""]
    unknown = [flag for flag in flags if flag not in _TERMINAL_FLAGS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown terminal flags: {', '.join(unknown)}")
    spec: dict[str, object] = {
        "id": uuid,
        "code": code,
        "single_stage": "single-stage" in flags,
        "three_ds": "no-3ds" not in flags,
    }
    try:
        (terminal,) = checked_terminals([spec])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return terminal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.epay_sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address only")
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    parser.add_argument("--expires-in", type=int, default=1200, help="token lifetime, seconds")
    parser.add_argument("--expires-in-as-string", action="store_true")
    parser.add_argument("--single-stage", action="store_true", help="AUTH card answers CHARGE")
    parser.add_argument("--three-ds-final-status", choices=("AUTH", "CHARGE"), default=None)
    parser.add_argument("--confirm-response", choices=("redirect", "json"), default="redirect")
    parser.add_argument("--reason-code-as-string", action="store_true")
    parser.add_argument("--postlink-delay", type=float, default=0.0)
    parser.add_argument("--postlink-duplicates", type=int, default=0)
    parser.add_argument("--postlink-drop", action="store_true")
    parser.add_argument(
        "--terminal",
        type=terminal_arg,
        action="append",
        default=[],
        metavar="UUID:CODE[:single-stage][:no-3ds]",
        help="an extra terminal of the merchant (repeatable)",
    )
    args = parser.parse_args(argv)

    sim = EpaySimulator(
        host=args.host,
        port=args.port,
        expires_in=args.expires_in,
        expires_in_as_string=args.expires_in_as_string,
        single_stage=args.single_stage,
        three_ds_final_status=args.three_ds_final_status,
        confirm_response=args.confirm_response,
        reason_code_as_string=args.reason_code_as_string,
        postlink_delay=args.postlink_delay,
        postlink_duplicates=args.postlink_duplicates,
        postlink_drop=args.postlink_drop,
        terminals=args.terminal,
    ).start()
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"ePay simulator on {sim.base_url}", flush=True)
    print(f"  EPAY_OAUTH_URL={sim.oauth_url}", flush=True)
    print(f"  EPAY_API_URL={sim.api_url}", flush=True)
    print(f"  client_id={TEST_CLIENT_ID} terminal={TEST_TERMINAL_ID}", flush=True)
    for terminal in sim.terminals:
        print(f"  terminal={terminal.id} code={terminal.code}", flush=True)
    print(f"  controls: {sim.base_url}/_sim/journal  /_sim/ledger  /_sim/faults", flush=True)
    while not done.wait(0.5):
        pass
    sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
