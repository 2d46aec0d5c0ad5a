// SPDX-License-Identifier: GPL-2.0-or-later
#include <vmcsum/report/text.hpp>

#include <doctest/doctest.h>

using namespace vmcsum::core;

TEST_CASE("utf8 validation")
{
  CHECK(is_valid_utf8(""));
  CHECK(is_valid_utf8("disk.qcow2"));
  CHECK(is_valid_utf8("Gr\xc3\xbc\xc3\x9f"
                      "e.img"));                  // "Grüße"
  CHECK(is_valid_utf8("\xf0\x9f\x92\xbe"));       // U+1F4BE
  CHECK_FALSE(is_valid_utf8("\xff"));             // never valid
  CHECK_FALSE(is_valid_utf8("\xc3"));             // truncated
  CHECK_FALSE(is_valid_utf8("\xc0\xaf"));         // overlong '/'
  CHECK_FALSE(is_valid_utf8("\xed\xa0\x80"));     // surrogate
  CHECK_FALSE(is_valid_utf8("\xf4\x90\x80\x80")); // > U+10FFFF
  CHECK_FALSE(is_valid_utf8("\xe0\x80\x80"));     // overlong 3-byte
}

TEST_CASE("escape_name keeps UTF-8 and escapes everything else reversibly")
{
  CHECK(escape_name("vm.img") == "vm.img");
  CHECK(escape_name("Gr\xc3\xbc\xc3\x9f"
                    "e") == "Gr\xc3\xbc\xc3\x9f"
                            "e");
  CHECK(escape_name("bad\xffname") == "bad\\xffname");
  CHECK(escape_name("new\nline") == "new\\x0aline");
  CHECK(escape_name("back\\slash") == "back\\\\slash");
  CHECK(escape_name("\x1b[31m") == "\\x1b[31m");
  CHECK(is_valid_utf8(escape_name("\xc3\x28\xa0\xa1\xe2\x28\xa1")));
  // Controls a terminal acts on although they are valid UTF-8: C1 (U+009B, CSI) and the
  // bidirectional overrides (U+202E shows "gpj.raw" as "war.jpg"), escaped byte by byte.
  CHECK(escape_name("a\xc2\x9b"
                    "31m") == "a\\xc2\\x9b31m");
  CHECK(escape_name("x\xe2\x80\xae"
                    "war.jpg") == "x\\xe2\\x80\\xaewar.jpg");
  CHECK(escape_name("\xe2\x81\xa6"
                    "a") == "\\xe2\\x81\\xa6a");           // U+2066
  CHECK(escape_name("\xe2\x80\x8f") == "\\xe2\\x80\\x8f"); // U+200F
  CHECK(escape_name("\xc2\xa0") == "\xc2\xa0");            // U+00A0: printable
  CHECK(escape_name("\xe2\x80\x94") == "\xe2\x80\x94");    // U+2014: printable
  for (const char* name : {"a\xc2\x9b", "x\xe2\x80\xae"
                                        "war.jpg"}) {
    CHECK(unescape_name(escape_name(name)) == name);
  }
}

TEST_CASE("printable disarms terminal controls in a message and keeps the rest")
{
  // The security review's name: retitles the terminal, erases the line, hides what follows.
  CHECK(printable("v\x1b]0;pwned\a\x1b[2K\rALL GOOD\x1b[8m.img: in use") ==
        "v\\x1b]0;pwned\\x07\\x1b[2K\\x0dALL GOOD\\x1b[8m.img: in use");
  CHECK(printable("C:\\path\\name") == "C:\\path\\name"); // backslashes stay
  // A newline in a name would start a made-up line ("vmcsum: note: all fine"): escaped.
  CHECK(printable("two\nlines\tand a tab") == "two\\x0alines\tand a tab");
  CHECK(printable("a\xc2\x9b"
                  "31m") == "a\\xc2\\x9b31m"); // C1 CSI
  CHECK(printable("x\xe2\x80\xae"
                  "war.jpg") == "x\\xe2\\x80\\xaewar.jpg"); // bidi override
  CHECK(printable("bad\xffname") == "bad\\xffname");
  CHECK(printable("Gr\xc3\xbc\xc3\x9f"
                  "e") == "Gr\xc3\xbc\xc3\x9f"
                          "e");
}

TEST_CASE("human_bytes uses binary units")
{
  CHECK(human_bytes(0) == "0B");
  CHECK(human_bytes(1023) == "1023B");
  CHECK(human_bytes(1536) == "1.50KiB");
  CHECK(human_bytes(10ULL << 30) == "10.00GiB");
}

TEST_CASE("unescape_name undoes escape_name, byte for byte")
{
  for (std::string s : {std::string("vm.img"), std::string("a\\b"), std::string("\xff\x01x\\xff"),
                        std::string("Gr\xc3\xbc\xc3\x9f\n")}) {
    CHECK(unescape_name(escape_name(s)) == s);
  }
  CHECK(unescape_name("\\x4") == "\\x4"); // not an escape escape_name makes: kept
}
