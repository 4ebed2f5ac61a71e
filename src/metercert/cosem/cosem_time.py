"""COSEM date, time and date-time values (the Clock object's ``time``).

Fields are kept as the raw numbers on the wire so that "not specified"
(0xFF / 0xFFFF / deviation 0x8000) and the DST wildcards survive a round trip.
``deviation`` follows the Blue Book: minutes from *local time to UTC*, so
UTC+01:00 is -60. ``from_datetime`` / ``to_datetime`` convert accordingly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from metercert.cosem.errors import BadLength, InvalidValue
from metercert.cosem.reader import ByteReader

NOT_SPECIFIED = 0xFF
YEAR_NOT_SPECIFIED = 0xFFFF
DEVIATION_NOT_SPECIFIED = -0x8000
#: month / day wildcards: 0xFD daylight-saving end (second-last day), 0xFE begin (last day)
_MONTH_OK = set(range(1, 13)) | {0xFD, 0xFE, 0xFF}
_DAY_OK = set(range(1, 32)) | {0xFD, 0xFE, 0xFF}


def _check(name: str, value: int, allowed: range | set[int], offset: int | None) -> None:
    if value not in allowed:
        raise InvalidValue(f"COSEM {name} value {value} is out of range", offset)


@dataclass(frozen=True, slots=True)
class CosemDate:
    """Five bytes: year, month, day of month, day of week (1 = Monday)."""

    year: int = YEAR_NOT_SPECIFIED
    month: int = NOT_SPECIFIED
    day: int = NOT_SPECIFIED
    weekday: int = NOT_SPECIFIED

    def __post_init__(self) -> None:
        _check("year", self.year, range(0x10000), None)
        _check("month", self.month, _MONTH_OK, None)
        _check("day", self.day, _DAY_OK, None)
        _check("day-of-week", self.weekday, set(range(1, 8)) | {0xFF}, None)

    @classmethod
    def read(cls, reader: ByteReader) -> CosemDate:
        start = reader.pos
        raw = reader.take(5, "date")
        try:
            return cls(int.from_bytes(raw[:2], "big"), raw[2], raw[3], raw[4])
        except InvalidValue as exc:
            raise InvalidValue(str(exc), start) from None

    @classmethod
    def from_bytes(cls, data: bytes) -> CosemDate:
        if len(data) != 5:
            raise BadLength(f"date needs exactly 5 bytes, got {len(data)}")
        return cls.read(ByteReader(data))

    @classmethod
    def from_date(cls, d: date) -> CosemDate:
        return cls(d.year, d.month, d.day, d.isoweekday())

    def to_bytes(self) -> bytes:
        return self.year.to_bytes(2, "big") + bytes((self.month, self.day, self.weekday))

    @property
    def fully_specified(self) -> bool:
        return self.year != YEAR_NOT_SPECIFIED and self.month <= 12 and self.day <= 31

    def to_date(self) -> date:
        if not self.fully_specified:
            raise InvalidValue(f"date {self} has unspecified or wildcard fields")
        try:
            return date(self.year, self.month, self.day)
        except ValueError as exc:
            raise InvalidValue(f"date {self} is not a calendar date: {exc}") from None


@dataclass(frozen=True, slots=True)
class CosemTime:
    """Four bytes: hour, minute, second, hundredths."""

    hour: int = NOT_SPECIFIED
    minute: int = NOT_SPECIFIED
    second: int = NOT_SPECIFIED
    hundredths: int = NOT_SPECIFIED

    def __post_init__(self) -> None:
        _check("hour", self.hour, set(range(24)) | {0xFF}, None)
        _check("minute", self.minute, set(range(60)) | {0xFF}, None)
        _check("second", self.second, set(range(60)) | {0xFF}, None)
        _check("hundredths", self.hundredths, set(range(100)) | {0xFF}, None)

    @classmethod
    def read(cls, reader: ByteReader) -> CosemTime:
        start = reader.pos
        raw = reader.take(4, "time")
        try:
            return cls(*raw)
        except InvalidValue as exc:
            raise InvalidValue(str(exc), start) from None

    @classmethod
    def from_bytes(cls, data: bytes) -> CosemTime:
        if len(data) != 4:
            raise BadLength(f"time needs exactly 4 bytes, got {len(data)}")
        return cls.read(ByteReader(data))

    @classmethod
    def from_time(cls, t: time) -> CosemTime:
        return cls(t.hour, t.minute, t.second, t.microsecond // 10_000)

    def to_bytes(self) -> bytes:
        return bytes((self.hour, self.minute, self.second, self.hundredths))

    @property
    def fully_specified(self) -> bool:
        return NOT_SPECIFIED not in (self.hour, self.minute, self.second)

    def to_time(self) -> time:
        if not self.fully_specified:
            raise InvalidValue(f"time {self} has unspecified fields")
        hundredths = 0 if self.hundredths == NOT_SPECIFIED else self.hundredths
        return time(self.hour, self.minute, self.second, hundredths * 10_000)


@dataclass(frozen=True, slots=True)
class CosemDateTime:
    """Twelve bytes: date, time, deviation (int16 minutes), clock status."""

    date: CosemDate = CosemDate()
    time: CosemTime = CosemTime()
    deviation: int = DEVIATION_NOT_SPECIFIED
    clock_status: int = NOT_SPECIFIED

    def __post_init__(self) -> None:
        if self.deviation != DEVIATION_NOT_SPECIFIED and not -720 <= self.deviation <= 720:
            raise InvalidValue(f"COSEM deviation {self.deviation} is outside -720..720 minutes")
        _check("clock status", self.clock_status, range(256), None)

    @classmethod
    def read(cls, reader: ByteReader) -> CosemDateTime:
        d = CosemDate.read(reader)
        t = CosemTime.read(reader)
        start = reader.pos
        deviation = reader.sint(2, "date-time deviation")
        status = reader.u8("date-time clock status")
        try:
            return cls(d, t, deviation, status)
        except InvalidValue as exc:
            raise InvalidValue(str(exc), start) from None

    @classmethod
    def from_bytes(cls, data: bytes) -> CosemDateTime:
        if len(data) != 12:
            raise BadLength(f"date-time needs exactly 12 bytes, got {len(data)}")
        return cls.read(ByteReader(data))

    @classmethod
    def from_datetime(cls, dt: datetime, clock_status: int = 0) -> CosemDateTime:
        """Build the Clock ``time`` value; a naive datetime gets deviation "not specified"."""
        offset = dt.utcoffset()
        deviation = (
            DEVIATION_NOT_SPECIFIED if offset is None else -int(offset.total_seconds() // 60)
        )
        return cls(
            CosemDate.from_date(dt.date()), CosemTime.from_time(dt.time()), deviation, clock_status
        )

    def to_bytes(self) -> bytes:
        return (
            self.date.to_bytes()
            + self.time.to_bytes()
            + self.deviation.to_bytes(2, "big", signed=True)
            + bytes((self.clock_status,))
        )

    def to_datetime(self) -> datetime:
        """The Python datetime; timezone-aware unless the deviation is not specified."""
        d = self.date.to_date()
        t = self.time.to_time()
        tz = None
        if self.deviation != DEVIATION_NOT_SPECIFIED:
            tz = timezone(timedelta(minutes=-self.deviation))
        return datetime.combine(d, t, tzinfo=tz)
