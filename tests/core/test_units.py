import pytest

from wsbench.core.units import UnitError, format_duration, format_size, parse_duration, parse_rate, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20s", 20.0), ("500ms", 0.5), ("250us", 250e-6), ("2m", 120.0), ("1h", 3600.0), (3, 3.0), ("1.5", 1.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "rate"), [("2000/s", 2000.0), ("120/min", 2.0), ("5/ms", 5000.0), (50, 50.0)])
def test_rates(text: object, rate: float) -> None:
    assert parse_rate(text) == pytest.approx(rate)


@pytest.mark.parametrize(
    ("text", "size"), [("1KiB", 1024), ("2KB", 2000), ("512B", 512), ("1.5MiB", 1572864), (64, 64), ("1kib", 1024)]
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["fast", "10 parsecs", "-1s", True, None, [1], "nan"])
def test_bad_durations_say_what_was_expected(bad: object) -> None:
    with pytest.raises(UnitError):
        parse_duration(bad)


def test_bad_rate_and_size_messages() -> None:
    with pytest.raises(UnitError, match="rate"):
        parse_rate("2000/y")
    with pytest.raises(UnitError, match="whole number of bytes"):
        parse_size("1.5B")
    with pytest.raises(UnitError, match="size"):
        parse_size("1 lightyear")


def test_formatting_round_trips() -> None:
    assert format_duration(0.5) == "500ms"
    assert parse_duration(format_duration(0.0025)) == pytest.approx(0.0025)
    assert format_size(2048) == "2KiB"
    assert parse_size(format_size(3 * 1024 * 1024)) == 3 * 1024 * 1024
