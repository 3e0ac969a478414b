"""The one line `make run` prints when a notebook cell fails: plain text, the error's type and message;
and SIGTERM taken as Ctrl-C."""
from __future__ import annotations

import signal

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from fitbit_lakehouse.pipeline import cell_error_line


def test_a_failed_cell_is_one_plain_line_from_a_real_kernel():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "raise RuntimeError('Java gateway exited\\nwhile starting')")])
    with pytest.raises(CellExecutionError) as err:
        NotebookClient(notebook, kernel_name="python3", timeout=60).execute()
    # the kernel's traceback carries IPython's colour codes; the line is built from the error's type and value
    assert cell_error_line(err.value.ename, err.value.evalue) == "RuntimeError: Java gateway exited"


def test_a_java_error_names_the_java_exception(spark):
    from py4j.protocol import Py4JJavaError

    with pytest.raises(Py4JJavaError) as err:
        spark.sparkContext._jvm.java.lang.Class.forName("no.such.Klass")   # an error PySpark does not convert
    line = cell_error_line(type(err.value).__name__, str(err.value))   # what ipykernel sends as evalue
    assert line == "Py4JJavaError: java.lang.ClassNotFoundException: no.such.Klass"


def test_an_error_without_a_message():
    assert cell_error_line("KeyboardInterrupt", "") == "KeyboardInterrupt"


def test_sigterm_does_what_ctrl_c_does_whatever_handles_ctrl_c():
    from fitbit_lakehouse.__main__ import as_ctrl_c

    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))   # e.g. make stream's
    try:
        as_ctrl_c(signal.SIGTERM, None)
        assert calls == [signal.SIGINT]
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # a job started in the background ignores Ctrl-C
        with pytest.raises(KeyboardInterrupt):
            as_ctrl_c(signal.SIGTERM, None)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with pytest.raises(KeyboardInterrupt):
            as_ctrl_c(signal.SIGTERM, None)
    finally:
        signal.signal(signal.SIGINT, previous)
