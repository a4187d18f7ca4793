from monitor.attach.compile_error import summarize

HEADER_DUMP = """\
In file included from /virtual/main.c:2:
In file included from include/uapi/linux/ptrace.h:183:
/usr/src/linux-headers-7.2.13+deb14-common/include/linux/compiler_types.h:92:10: fatal error: 'asm/gen-asm-types.h' file not found
#include <asm/gen-asm-types.h>
         ^~~~~~~~~~~~~~~~~~~~~
/usr/src/linux-headers-7.2.13+deb14-common/include/linux/types.h:12:1: error: unknown type name '__kernel_x'
2 errors generated.
"""


def test_first_header_error_with_the_count_of_the_rest():
    assert summarize(HEADER_DUMP) == ("kernel header include/linux/compiler_types.h:92: "
                                      "'asm/gen-asm-types.h' file not found (and 1 more error)")


def test_error_in_our_program_is_named_as_ours():
    text = "/virtual/main.c:40:3: error: use of undeclared identifier 'foo'\n1 error generated.\n"
    assert summarize(text) == "mnmon's BPF program (main.c):40: use of undeclared identifier 'foo'"


def test_driver_error_without_a_location():
    text = "error: unknown argument: '-fmin-function-alignment=16'\nerror: unknown argument: '-fzero-init'\n"
    assert summarize(text) == "unknown argument: '-fmin-function-alignment=16' (and 1 more error)"


def test_warnings_alone_are_not_errors():
    text = "/virtual/main.c:3:1: warning: unused variable 'x' [-Wunused-variable]\n1 warning generated.\n"
    assert summarize(text) == ""
    assert summarize("") == "" and summarize(None) == ""


def test_only_a_count_left():
    assert summarize("3 errors generated.\n") == "3 compile errors"


def test_long_message_is_cut_to_one_short_line():
    text = "/virtual/main.c:1:1: error: " + "x" * 500 + "\n"
    out = summarize(text, limit=80)
    assert len(out) == 80 and out.endswith("...") and "\n" not in out
