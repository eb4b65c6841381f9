"""The server's Timestamp conversion (integer arithmetic, on every dataset and version it answers) agrees with
protobuf's own FromDatetime for every instant a Timestamp can hold, aware or naive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf import timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from server.api.convert import timestamp

ZONES = st.one_of(st.none(), st.just(UTC),
                  st.integers(-23 * 60, 23 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes))))


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES))
def test_timestamp_agrees_with_from_datetime(value: datetime) -> None:
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(value)
    assert timestamp(value) == expected


def test_no_value_leaves_the_field_unset() -> None:
    assert timestamp(None) is None
