// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "cli/app.hpp"

int main(int argc, char** argv)
{
  return vmcsum::cli::run(argc, argv);
}
