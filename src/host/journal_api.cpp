// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/host/journal_api.hpp>

#include <dlfcn.h>

namespace vmcsum::core {

namespace {

struct Loaded
{
  JournalApi api{};
  bool ok = false;
  std::string why;
};

template <class F>
bool load(void* lib, const char* name, F& out, std::string& why)
{
  // POSIX: a function pointer round-trips through dlsym's void* (dlsym(3)).
  out = reinterpret_cast<F>(::dlsym(lib, name));
  if (!out && why.empty()) {
    const char* e = ::dlerror();
    why = e ? e : std::string(name) + " not found";
  }
  return out != nullptr;
}

Loaded load_all()
{
  Loaded l;
  // The soname the package depends on; never unloaded (the process ends first).
  void* lib = ::dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* e = ::dlerror();
    l.why = e ? e : "libsystemd.so.0 not loaded";
    return l;
  }
  JournalApi& a = l.api;
  l.ok = load(lib, "sd_journal_open", a.open, l.why) &
         load(lib, "sd_journal_open_files", a.open_files, l.why) &
         load(lib, "sd_journal_open_directory", a.open_directory, l.why) &
         load(lib, "sd_journal_close", a.close, l.why) &
         load(lib, "sd_journal_add_match", a.add_match, l.why) &
         load(lib, "sd_journal_seek_head", a.seek_head, l.why) &
         load(lib, "sd_journal_next", a.next, l.why) &
         load(lib, "sd_journal_get_data", a.get_data, l.why) &
         load(lib, "sd_journal_get_monotonic_usec", a.get_monotonic_usec, l.why) &
         load(lib, "sd_journal_get_realtime_usec", a.get_realtime_usec, l.why) &
         load(lib, "sd_journal_send", a.send, l.why) &
         load(lib, "sd_id128_get_boot", a.id128_get_boot, l.why) &
         load(lib, "sd_id128_to_string", a.id128_to_string, l.why);
  return l;
}

} // namespace

const JournalApi* journal_api(std::string* why)
{
  static const Loaded loaded = load_all(); // once, thread-safe (C++11 statics)
  if (!loaded.ok && why) {
    *why = loaded.why;
  }
  return loaded.ok ? &loaded.api : nullptr;
}

} // namespace vmcsum::core
