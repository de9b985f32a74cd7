"""engine.child.ChildProcess, the one polled child process (issue 12), and engine.threads."""

import sys

import pytest

from engine.child import ChildProcess
from engine.threads import set_threads

ECHO = "import sys\nfor line in sys.stdin:\n    print('got ' + line.strip(), flush=True)\n    if line.strip() == 'stop': break\n"


def test_lines_arrive_without_blocking_and_input_reaches_the_child():
    child = ChildProcess([sys.executable, "-c", ECHO], stdin=True).start()
    try:
        with pytest.raises(TimeoutError):
            child.read_line(timeout=0.2)  # nothing said yet: the caller is not stuck
        assert child.send("hello")
        assert child.read_line(timeout=30) == "got hello\n"
        assert child.send("stop")
        assert list(child.lines()) == ["got stop\n"]
        assert child.read_line(timeout=1) is None  # the end stays the end
        assert child.wait(30) == 0 and child.returncode == 0
        assert not child.send("late")  # stdin gone with the child... or closed: never raises
    finally:
        child.kill()


def test_kill_reaps_a_child_that_hangs():
    child = ChildProcess([sys.executable, "-c", "import time; time.sleep(600)"], stdout=None).start()
    assert child.poll() is None
    child.kill()
    assert child.poll() is not None
    child.kill()  # a second kill is harmless


def test_captured_output_and_a_program_that_cannot_start(tmp_path):
    child = ChildProcess([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"],
                         stdout="capture", stderr="capture").start()
    child.wait(30)
    assert child.communicate() == ("out\n", "err\n")
    with pytest.raises(OSError):
        ChildProcess([str(tmp_path / "no-such-program")]).start()


def test_thread_count_is_checked():
    set_threads(0)  # leaves every library at its default
    with pytest.raises(ValueError, match="threads"):
        set_threads("4")
