"""Masking of contact details in what the public sees (the handling department sees them in full)."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# Mainland mobile numbers (11 digits starting with 1) and other runs of 7+ digits such as landlines.
_PHONE = re.compile(r"(?<!\d)(\+?86[- ]?)?(1[3-9]\d)[- ]?(\d{4})[- ]?(\d{4})(?!\d)")
_DIGITS = re.compile(r"(?<!\d)(\d{2,4}-?)?(\d{3})\d{1,4}(\d{3})(?!\d)")


def mask_email(email: str) -> str:
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", email)


def mask_phone(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]  # drop the country code of +86 numbers
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def mask_text(text: str | None) -> str | None:
    """Mask e-mail addresses and phone numbers a citizen typed into free text."""
    if not text:
        return text
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    text = _PHONE.sub(lambda m: f"{m.group(2)}****{m.group(4)}", text)
    return _DIGITS.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}****{m.group(3)}", text)
