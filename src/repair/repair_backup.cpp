// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/checksum.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/repair/repair_backup.hpp>
#include <vmcsum/report/json.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/sys/fd.hpp>

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vmcsum::core {

namespace {

constexpr const char* k_magic_line = "vmcsum-repair-backup 2\n";
constexpr const char* k_magic_line_1 = "vmcsum-repair-backup 1\n"; // still read
constexpr char k_record_magic[4] = {'V', 'M', 'C', 'R'};
constexpr char k_hashed_magic[4] = {'V', 'M', 'C', 'H'};
constexpr size_t k_hashed_body = 4 + 8 + 4 + 4 + 32; // what the record's XXH64 covers
constexpr uint32_t k_algorithm_sha256 = 1;
constexpr uint16_t k_btrfs_csum_sha256 = 2; // Checksummer's type for SHA-256 (btrfs_tree.h)
constexpr char k_trailer_magic[4] = {'V', 'M', 'C', 'E'};
constexpr size_t k_record_header = 4 + 8 + 8 + 4 + 4 + 1 + 1 + 2 + 32 + 8;
constexpr uint32_t k_max_record = 64u << 20;
constexpr size_t k_max_header_line = 64u << 20;

void put(uint8_t*& p, uint64_t v, int bytes)
{
  for (int i = 0; i < bytes; ++i) {
    *p++ = static_cast<uint8_t>(v >> (8 * i));
  }
}

uint64_t get(const uint8_t*& p, int bytes)
{
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v |= static_cast<uint64_t>(*p++) << (8 * i);
  }
  return v;
}

// A record's magic and file offset, the start of both kinds; returns where the rest goes.
uint8_t* begin_record(uint8_t* h, const char (&magic)[4], uint64_t offset)
{
  std::memcpy(h, magic, 4);
  uint8_t* p = h + 4;
  put(p, offset, 8);
  return p;
}

uint64_t chain(uint64_t acc, uint64_t h)
{
  uint8_t b[16];
  uint8_t* p = b;
  put(p, acc, 8);
  put(p, h, 8);
  return XXH64(b, sizeof b, 0);
}

[[noreturn]] void bad_backup(const std::string& path, const std::string& why)
{
  throw Error(Errc::usage, "not a complete vmcsum repair backup: " + why, path);
}

} // namespace

struct BackupWriter::Sha : Sha256Stream
{
};

std::string encode_backup_header(const BackupHeader& h)
{
  nlohmann::ordered_json j;
  j["path"] = escape_name(h.path);
  j["fsid"] = h.fsid;
  j["subvolume"] = h.subvolume;
  j["inode"] = h.inode;
  j["size"] = h.size;
  j["mtime"] = {h.mtime_sec, h.mtime_nsec};
  j["sectorsize"] = h.sectorsize;
  j["csum_type"] = h.csum_type;
  j["created"] = h.created;
  auto& r = j["ranges"] = nlohmann::ordered_json::array();
  for (const auto& [off, len] : h.ranges) {
    r.push_back({off, len});
  }
  return j.dump();
}

BackupHeader decode_backup_header(const std::string& line)
{
  BackupHeader h;
  try {
    auto j = nlohmann::json::parse(line);
    h.path = unescape_name(j.at("path").get<std::string>());
    h.fsid = j.at("fsid").get<std::string>();
    h.subvolume = json_integer<uint64_t>(j.at("subvolume"));
    h.inode = json_integer<uint64_t>(j.at("inode"));
    h.size = json_integer<uint64_t>(j.at("size"));
    h.mtime_sec = json_integer<int64_t>(j.at("mtime").at(0));
    h.mtime_nsec = json_integer<int64_t>(j.at("mtime").at(1));
    h.sectorsize = json_integer<uint32_t>(j.at("sectorsize"));
    h.csum_type = j.at("csum_type").get<std::string>();
    h.created = j.at("created").get<std::string>();
    for (const auto& r : j.at("ranges")) {
      h.ranges.push_back(json_range(r.at(0), r.at(1)));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(Errc::usage, std::string("backup header: ") + e.what());
  }
  if (h.sectorsize == 0 || h.sectorsize > (1u << 16)) {
    throw Error(Errc::usage, "backup header: bad sectorsize");
  }
  return h;
}

BackupWriter::BackupWriter(const std::string& dir, const BackupHeader& header)
  : m_sha(std::make_unique<Sha>())
  , m_dir(dir)
{
  sys::Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dfd) {
    throw_errno("open the backup directory", dir);
  }
  // sys::TempFile: a temp name no image is plausibly called, flock'ed while this run lives and
  // marked as vmcsum's own (an xattr), so the stale clean-up of a later run never removes an
  // image merely named like one (issue 12 #3); the backup's final name is given at commit().
  m_tmp = std::make_unique<sys::TempFile>(*dfd, "vmcsum-backup", dir, 0600);
  std::string head = std::string(k_magic_line) + encode_backup_header(header) + "\n";
  write(head.data(), head.size());
}

BackupWriter::~BackupWriter() = default;

void BackupWriter::write(const void* p, size_t n)
{
  const auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    ssize_t w = ::write(m_tmp->fd(), b, n);
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      throw_errno("write the backup", m_tmp->display_path());
    }
    m_sha->update({static_cast<const uint8_t*>(b), static_cast<size_t>(w)});
    b += w;
    n -= static_cast<size_t>(w);
    m_bytes += static_cast<uint64_t>(w);
  }
}

void BackupWriter::add(const BackupRecord& r)
{
  add(r.offset, r.logical, r.mirror, r.flags, r.expected_csum, r.data.data(),
      static_cast<uint32_t>(r.data.size()));
}

void BackupWriter::add(uint64_t offset, uint64_t logical, uint32_t mirror, uint8_t flags,
                       const std::vector<uint8_t>& csum, const uint8_t* data, uint32_t length)
{
  uint8_t h[k_record_header] = {};
  uint8_t* p = begin_record(h, k_record_magic, offset);
  put(p, logical, 8);
  put(p, length, 4);
  put(p, mirror, 4);
  put(p, flags, 1);
  const size_t clen = std::min<size_t>(csum.size(), 32);
  put(p, clen, 1);
  put(p, 0, 2);
  if (clen > 0) {
    std::memcpy(p, csum.data(), clen);
  }
  p += 32;
  const uint64_t dh = XXH64(data, length, 0);
  put(p, dh, 8);
  write(h, sizeof h);
  write(data, length);
  m_chain = chain(m_chain, dh);
  ++m_count;
}

std::vector<uint8_t> stretch_digest(const uint8_t* data, size_t length)
{
  return Checksummer(k_btrfs_csum_sha256).compute({data, length});
}

std::vector<uint8_t> BackupWriter::add_hashed(uint64_t offset, const uint8_t* data, uint32_t length)
{
  if (length == 0 || length > k_max_hashed) {
    throw Error(Errc::usage, "a hashed stretch of " + std::to_string(length) + " bytes");
  }
  uint8_t h[k_hashed_body + 8] = {};
  uint8_t* p = begin_record(h, k_hashed_magic, offset);
  put(p, length, 4);
  put(p, k_algorithm_sha256, 4);
  const std::vector<uint8_t> digest = stretch_digest(data, length);
  p = std::copy(digest.begin(), digest.end(), p);
  const uint64_t rh = XXH64(h, k_hashed_body, 0);
  put(p, rh, 8);
  write(h, sizeof h);
  m_chain = chain(m_chain, rh);
  ++m_count;
  return digest;
}

std::string BackupWriter::commit(const std::string& final_name,
                                 const std::function<void(const std::string&)>& before_rename)
{
  uint8_t t[20];
  uint8_t* p = t;
  std::memcpy(p, k_trailer_magic, 4);
  p += 4;
  put(p, m_count, 8);
  put(p, m_chain, 8);
  write(t, sizeof t);
  m_sha256 = m_sha->hex();
  if (::fsync(m_tmp->fd()) < 0) {
    throw_errno("fsync the backup", m_tmp->display_path());
  }
  if (before_rename) {
    before_rename(m_sha256);
  }
  // fsync, renameat2, marker dropped, directory fsync; never over another file: two images
  // can give one name (same base name and inode number in two subvolumes, the same second).
  m_tmp->commit(final_name, sys::TempFile::Replace::no);
  return m_dir + "/" + final_name;
}

BackupReader::BackupReader(const std::string& path)
  : m_path(path)
{
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    throw_errno("open the backup", path);
  }
  struct stat st = {};
  if (::fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(Errc::usage, "not a regular file", path);
  }
  m_file = ::fdopen(fd, "rb");
  if (!m_file) {
    ::close(fd);
    throw_errno("open the backup", path);
  }
  char magic[32] = {};
  const size_t mlen = std::strlen(k_magic_line); // both formats' lines are as long
  if (std::fread(magic, 1, mlen, m_file) != mlen) {
    bad_backup(path, "wrong magic line");
  }
  if (std::memcmp(magic, k_magic_line, mlen) == 0) {
    m_format = 2;
  } else if (std::memcmp(magic, k_magic_line_1, mlen) == 0) {
    m_format = 1;
  } else {
    bad_backup(path, "wrong magic line");
  }
  std::string line;
  int c = 0;
  while ((c = std::fgetc(m_file)) != EOF && c != '\n') {
    line += static_cast<char>(c);
    if (line.size() > k_max_header_line) {
      bad_backup(path, "header too long");
    }
  }
  if (c != '\n') {
    bad_backup(path, "truncated header");
  }
  m_header = decode_backup_header(line);
  m_records_start = std::ftell(m_file);
  m_sorted_ranges = m_header.ranges;
  std::sort(m_sorted_ranges.begin(), m_sorted_ranges.end());
}

std::string BackupReader::sha256()
{
  Sha256Stream sha;
  std::vector<uint8_t> buf(1u << 20);
  const int fd = ::fileno(m_file);
  for (off_t off = 0;;) {
    const ssize_t n = ::pread(fd, buf.data(), buf.size(), off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      throw_errno("read the backup", m_path);
    }
    if (n == 0) {
      break;
    }
    sha.update({buf.data(), static_cast<size_t>(n)});
    off += n;
  }
  return sha.hex();
}

bool BackupReader::record_inside(uint64_t offset, uint64_t length, bool to_sector) const
{
  // A device copy of a file's last sector is a whole sector though the range ends at the file's
  // size: a range reaches up to its end rounded up to the sector size.
  auto it = std::upper_bound(m_sorted_ranges.begin(), m_sorted_ranges.end(),
                             std::pair<uint64_t, uint64_t>{offset, ~0ULL});
  if (it == m_sorted_ranges.begin()) {
    return false;
  }
  --it;
  const uint64_t ss = to_sector ? m_header.sectorsize : 1;
  const uint64_t reach = it->second > ~0ULL - ss ? it->second : (it->second + ss - 1) / ss * ss;
  const uint64_t into = offset - it->first;
  return into < it->second && length <= reach - into;
}

bool BackupReader::owned_by_us() const
{
  struct stat st = {};
  return ::fstat(::fileno(m_file), &st) == 0 && st.st_uid == ::geteuid() &&
         (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

BackupReader::~BackupReader()
{
  if (m_file) {
    std::fclose(m_file);
  }
}

void BackupReader::rewind()
{
  std::fseek(m_file, m_records_start, SEEK_SET);
  m_count = 0;
  m_chain = 0;
}

bool BackupReader::next(BackupRecord& r)
{
  uint8_t h[k_record_header];
  if (std::fread(h, 1, 4, m_file) != 4) {
    bad_backup(m_path, "no trailer");
  }
  if (std::memcmp(h, k_trailer_magic, 4) == 0) {
    uint8_t t[16];
    if (std::fread(t, 1, sizeof t, m_file) != sizeof t) {
      bad_backup(m_path, "truncated trailer");
    }
    const uint8_t* p = t;
    uint64_t count = get(p, 8);
    uint64_t ch = get(p, 8);
    if (count != m_count || ch != m_chain) {
      bad_backup(m_path, "trailer does not match the records");
    }
    return false;
  }
  if (std::memcmp(h, k_hashed_magic, 4) == 0 && m_format >= 2) {
    read_hashed(r);
    return true;
  }
  if (std::memcmp(h, k_record_magic, 4) != 0) {
    bad_backup(m_path, "bad record magic");
  }
  if (std::fread(h + 4, 1, k_record_header - 4, m_file) != k_record_header - 4) {
    bad_backup(m_path, "truncated record");
  }
  const uint8_t* p = h + 4;
  r.offset = get(p, 8);
  r.logical = get(p, 8);
  const auto length = static_cast<uint32_t>(get(p, 4));
  r.mirror = static_cast<uint32_t>(get(p, 4));
  r.flags = static_cast<uint8_t>(get(p, 1));
  const auto clen = static_cast<size_t>(get(p, 1));
  p += 2;
  r.expected_csum.assign(p, p + std::min<size_t>(clen, 32));
  p += 32;
  const uint64_t dh = get(p, 8);
  if (length > k_max_record) {
    bad_backup(m_path, "record too long");
  }
  r.length = length;
  r.sha256.clear();
  r.data.resize(length);
  if (std::fread(r.data.data(), 1, length, m_file) != length) {
    bad_backup(m_path, "truncated record data");
  }
  if (XXH64(r.data.data(), length, 0) != dh) {
    bad_backup(m_path, "record at offset " + std::to_string(r.offset) + " is damaged");
  }
  // Undo writes records at their offsets: one outside every range the header names is refused
  // whatever the options (issue 12 #2), so a backup can never write where its repair did not.
  // Format 2 writes the bytes as read only as hashed stretches: a record of them (mirror 0) is
  // not one its writer makes.
  if (m_format >= 2 && r.mirror == 0) {
    bad_backup(m_path, "a record of the bytes as read (mirror 0) in a format-2 backup");
  }
  if (!record_inside(r.offset, length, true)) {
    bad_backup(m_path, "the record at offset " + std::to_string(r.offset) + " (" +
                         std::to_string(length) + " bytes) lies outside the header's ranges");
  }
  m_chain = chain(m_chain, dh);
  ++m_count;
  return true;
}

// The rest of a "VMCH" record (its magic is read): checked like a record with data, its digest
// in place of the data.
void BackupReader::read_hashed(BackupRecord& r)
{
  uint8_t h[k_hashed_body + 8];
  std::memcpy(h, k_hashed_magic, 4);
  if (std::fread(h + 4, 1, sizeof h - 4, m_file) != sizeof h - 4) {
    bad_backup(m_path, "truncated record");
  }
  const uint8_t* p = h + 4;
  r.offset = get(p, 8);
  r.length = static_cast<uint32_t>(get(p, 4));
  const auto algorithm = static_cast<uint32_t>(get(p, 4));
  r.sha256.assign(p, p + 32);
  p += 32;
  const uint64_t rh = get(p, 8);
  if (XXH64(h, k_hashed_body, 0) != rh) {
    bad_backup(m_path, "record at offset " + std::to_string(r.offset) + " is damaged");
  }
  if (algorithm != k_algorithm_sha256) {
    bad_backup(m_path, "unknown digest algorithm " + std::to_string(algorithm));
  }
  if (r.length == 0 || r.length > k_max_hashed) {
    bad_backup(m_path, "hashed record of " + std::to_string(r.length) + " bytes");
  }
  // A hashed stretch is bytes of the file read through it: never past the range's end (the
  // file's size for the last one).
  if (!record_inside(r.offset, r.length, false)) {
    bad_backup(m_path, "the record at offset " + std::to_string(r.offset) + " (" +
                         std::to_string(r.length) + " bytes) lies outside the header's ranges");
  }
  r.logical = 0;
  r.mirror = 0;
  r.flags = 0;
  r.expected_csum.clear();
  r.data.clear();
  m_chain = chain(m_chain, rh);
  ++m_count;
}

void BackupReader::verify_complete()
{
  rewind();
  BackupRecord r;
  while (next(r)) {
  }
  rewind();
}

std::vector<std::string> remove_stale_backup_temps(const std::string& dir)
{
  std::vector<std::string> removed;
  sys::Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dfd) {
    return removed;
  }
  // Only temps vmcsum marked as its own, no longer locked by a running vmcsum (sys/temp_file).
  for (const auto& t : sys::remove_stale_temps(*dfd, sys::is_temp_name, false)) {
    if (t.removed) {
      removed.push_back(dir + "/" + t.name);
    }
  }
  return removed;
}

std::string backup_file_name(const std::string& image_name, uint64_t inode,
                             const std::string& utc_stamp)
{
  // Room for the rest within NAME_MAX (255).
  std::string name = image_name;
  if (name.size() > 160) {
    size_t cut = 160;
    while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xc0) == 0x80) {
      --cut;
    }
    name.resize(cut);
  }
  return name + "." + std::to_string(inode) + "." + utc_stamp + k_backup_suffix;
}

} // namespace vmcsum::core
