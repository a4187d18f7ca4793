def pytest_terminal_summary(terminalreporter):
    from tests.host import test_debian_package, test_robustness
    if test_debian_package.FIGURES:
        for line in test_debian_package.summary():
            terminalreporter.write_line(line)
    if test_robustness.FIGURES:
        for line in test_robustness.summary():
            terminalreporter.write_line(line)
