"""ePay's error codes: which are final, and what each means for retrying (dunning).

Source: ePay's own table, https://epayment.kz/docs/kody-oshibok (RU; EN at /en-US/docs/...,
KK at /kk/docs/...), whose last column says "final", or "not final, request the status of the
payment/transfer". Read 2026-12 from the stored copies of the three pages:

* rows 0 and 454-479 are as those copies show them (`Seen.PAGE`). The pages disagree on 459:
  RU and EN say final ("check the card number"), KK says not final ("the server does not
  answer"). The safe reading wins: not final.
* the copies stop at 479; rows 480-529 are the same page's rows as two independent
  integrations reproduce them (`Seen.COPIES`), all final.

Any code not in the table (1267 "communication error with the card system", 100, ...) is not final:
the status API decides, as after a timeout. Categories follow the bank's SDK list
(epay-api.md section 7) where it names the code, else the code's meaning for a saved card.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from payments.charges.declines import DeclineCategory

SOURCE = "https://epayment.kz/docs/kody-oshibok"
SUCCESS = 0


class Seen(StrEnum):
    """Where a row was read: the stored copy of ePay's page, or integrators' copies of it."""

    PAGE = "page"
    COPIES = "copies"


@dataclass(frozen=True)
class ErrorCode:
    """One row of ePay's table."""

    code: int
    final: bool
    category: DeclineCategory
    meaning: str
    seen: Seen


_H, _S, _A, _O = (
    DeclineCategory.HARD,
    DeclineCategory.SOFT,
    DeclineCategory.AUTHENTICATION,
    DeclineCategory.OTHER,
)
_P, _C = Seen.PAGE, Seen.COPIES
_ROWS = (
    ErrorCode(454, False, _S, "operation failed; the amount may be held on the card", _P),
    ErrorCode(455, True, _A, "3-D Secure unavailable, or card number mistyped", _P),
    ErrorCode(456, True, _S, "system error, try later", _P),
    ErrorCode(457, True, _O, "card expiry date mistyped", _P),
    ErrorCode(458, True, _S, "server does not answer, try later", _P),
    ErrorCode(459, False, _S, "KK page: server does not answer (RU/EN: card number)", _P),
    ErrorCode(460, True, _O, "error; the amount may be held, contact support", _P),
    ErrorCode(461, True, _S, "system error, try later", _P),
    ErrorCode(462, True, _O, "declined by the issuer: call your bank", _P),
    ErrorCode(463, True, _O, "declined by the issuer: call your bank", _P),
    ErrorCode(464, True, _O, "invalid merchant", _P),
    ErrorCode(465, True, _H, "card restricted", _P),
    ErrorCode(466, True, _O, "declined by the issuer: call your bank", _P),
    ErrorCode(467, True, _H, "card disabled", _P),
    ErrorCode(468, True, _A, "additional identification required", _P),
    ErrorCode(469, True, _O, "invalid transaction", _P),
    ErrorCode(470, True, _O, "invalid amount", _P),
    ErrorCode(471, True, _H, "no such card", _P),
    ErrorCode(472, True, _H, "no such card", _P),
    ErrorCode(473, True, _A, "3-D Secure authentication failed", _P),
    ErrorCode(475, True, _S, "unsuccessful, try again", _P),
    ErrorCode(476, True, _S, "no action taken; retry after 30 minutes", _P),
    ErrorCode(477, True, _O, "format error", _P),
    ErrorCode(478, True, _H, "expired card", _P),
    ErrorCode(479, True, _H, "restricted card", _P),
    ErrorCode(480, True, _O, "call the issuer", _C),
    ErrorCode(481, True, _H, "lost card", _C),
    ErrorCode(482, True, _H, "lost card", _C),
    ErrorCode(483, True, _H, "stolen card", _C),
    ErrorCode(484, True, _S, "insufficient funds", _C),
    ErrorCode(485, True, _H, "expired card", _C),
    ErrorCode(486, True, _O, "internet payments disabled on the card", _C),
    ErrorCode(487, True, _O, "declined, contact support", _C),
    ErrorCode(488, True, _S, "amount over the limit", _C),
    ErrorCode(489, True, _H, "card blocked", _C),
    ErrorCode(490, True, _H, "transactions prohibited on the card", _C),
    ErrorCode(491, True, _S, "payment frequency over the limit", _C),
    ErrorCode(492, True, _H, "card blocked after wrong PINs", _C),
    ErrorCode(493, True, _S, "issuer unavailable, try later", _C),
    ErrorCode(494, True, _S, "issuer unavailable, try later", _C),
    ErrorCode(495, True, _H, "prohibited, use another card", _C),
    ErrorCode(496, True, _A, "3-D Secure / payment system error", _C),
    ErrorCode(497, True, _S, "server does not answer, try later", _C),
    ErrorCode(498, True, _S, "payment with bonuses impossible, try later", _C),
    ErrorCode(499, True, _A, "3-D Secure code wrong or missing", _C),
    ErrorCode(500, True, _S, "server does not answer, try later", _C),
    ErrorCode(501, True, _O, "card service error", _C),
    ErrorCode(502, True, _S, "server does not answer, try later", _C),
    ErrorCode(503, True, _O, "copies disagree: server does not answer / 3-D Secure required", _C),
    ErrorCode(521, True, _O, "declined by the issuer: call your bank", _C),
    ErrorCode(522, True, _O, "record not found, check the card", _C),
    ErrorCode(523, True, _O, "declined by the issuer: call your bank", _C),
    ErrorCode(524, True, _H, "card invalid", _C),
    ErrorCode(525, True, _H, "card invalid", _C),
    ErrorCode(526, True, _S, "system error, try later", _C),
    ErrorCode(527, True, _O, "declined by the issuer: call your bank", _C),
    ErrorCode(528, True, _S, "daily limit of the card reached", _C),
    ErrorCode(529, True, _S, "daily limit of the terminal reached", _C),
)
TABLE: Mapping[int, ErrorCode] = MappingProxyType({row.code: row for row in _ROWS})


def lookup(code: int | None) -> ErrorCode | None:
    """The row of `code`; None for a code the table does not hold (or no code)."""
    return TABLE.get(code) if code is not None else None


def is_final(code: int | None) -> bool:
    """Whether ePay documents `code` as final: only then is a refusal a decline."""
    row = lookup(code)
    return row is not None and row.final


def decline_category(code: int | None) -> DeclineCategory:
    """What a decline with `code` means for retrying; `other` for codes outside the table."""
    row = lookup(code)
    return row.category if row is not None else DeclineCategory.OTHER
