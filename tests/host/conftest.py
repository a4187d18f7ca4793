def pytest_terminal_summary(terminalreporter):
    from tests.host import test_robustness
    if test_robustness.FIGURES:
        for line in test_robustness.summary():
            terminalreporter.write_line(line)
