// SPDX-License-Identifier: GPL-2.0-or-later
// A directory of the unit tests' own under the temp directory, removed with everything in it
// when the test case ends.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

class Scratch
{
public:
  Scratch()
  {
    std::string tmpl = std::filesystem::temp_directory_path().string() + "/vmcsum-unit-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    m_path = tmpl;
  }
  ~Scratch() { std::filesystem::remove_all(m_path); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  const std::string& path() const { return m_path; }
  std::string operator/(const std::string& name) const { return m_path + "/" + name; }

private:
  std::string m_path;
};
