"""Progress output: a bar on a terminal, plain lines in a log."""
import io

from ddpm.progress import LineProgress, progress_bar


def test_a_log_gets_plain_lines_every_few_seconds_not_carriage_returns():
    log = io.StringIO()
    bar = progress_bar(1000, desc="work", unit="img", file=log)
    assert isinstance(bar, LineProgress)
    for _ in range(1000):
        bar.update(1)  # within the interval: nothing printed per update
    assert log.getvalue() == ""
    bar.interval = 0.0
    bar.update(0)
    bar.set_postfix({"loss": "0.1"})
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 2
    assert lines[-1].startswith("work: 1000/1000 img (100%)") and lines[-1].endswith(", loss 0.1")
