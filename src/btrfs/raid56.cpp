// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/btrfs/raid56.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/sys/aligned_buffer.hpp>

#include <climits>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>

#include <isa-l/erasure_code.h>
#include <isa-l/raid.h>
#include <linux/btrfs_tree.h>

namespace vmcsum::btrfs {

unsigned parity_stripes(const Chunk& chunk)
{
  const uint64_t profile = chunk.type & BTRFS_BLOCK_GROUP_PROFILE_MASK;
  if (profile == BTRFS_BLOCK_GROUP_RAID5) {
    return 1;
  }
  return profile == BTRFS_BLOCK_GROUP_RAID6 ? 2 : 0;
}

bool is_raid56(const Chunk& chunk)
{
  return parity_stripes(chunk) != 0;
}

Raid56Place map_raid56(const Chunk& c, uint64_t logical)
{
  const unsigned nparity = parity_stripes(c);
  if (nparity == 0) {
    throw Error(Errc::unsupported,
                "chunk at logical " + std::to_string(c.logical) + " is not RAID5 or RAID6");
  }
  if (logical < c.logical || logical - c.logical >= c.length) {
    throw Error(Errc::not_found, "logical " + std::to_string(logical) + " is not in the chunk at " +
                                   std::to_string(c.logical));
  }
  // The tree-checker (btrfs_check_chunk_valid()) wants at least 2 stripes for RAID5 and 3 for
  // RAID6, i.e. at least one data unit, and stripe_len == BTRFS_STRIPE_LEN.
  if (c.stripes.size() != c.num_stripes || c.num_stripes <= nparity || c.stripe_len == 0) {
    throw Error(Errc::internal, "chunk at logical " + std::to_string(c.logical) + ": " +
                                  std::to_string(c.num_stripes) + " stripes of " +
                                  std::to_string(c.stripe_len) + " bytes cannot be RAID5/6");
  }
  const uint64_t ndata = c.num_stripes - nparity;
  const uint64_t offset = logical - c.logical;
  const uint64_t stripe_nr = offset / c.stripe_len; // data units before ours, over all rows

  Raid56Place out;
  out.unit_offset = offset % c.stripe_len;
  out.data_index = static_cast<unsigned>(stripe_nr % ndata);
  FullStripe& f = out.full;
  f.row = stripe_nr / ndata;
  f.stripe_len = c.stripe_len;
  f.logical = c.logical + f.row * ndata * c.stripe_len;
  // map_blocks_raid56_read(): stripe_index = (row + data_index) % num_stripes, physical =
  // stripe start + row * stripe_len + offset in unit. The full-stripe mapping in
  // btrfs_map_block() puts member i (data 0..ndata-1, then P, then Q) of the row on chunk
  // stripe (i + row) % num_stripes: parity rotates one device per row.
  const auto member = [&](uint64_t i) {
    const Stripe& s = c.stripes[(f.row + i) % c.num_stripes];
    return StripeUnit{s.devid, s.offset + f.row * c.stripe_len};
  };
  f.data.reserve(ndata);
  for (uint64_t j = 0; j < ndata; ++j) {
    f.data.push_back(member(j));
  }
  f.p = member(ndata);
  if (nparity == 2) {
    f.q = member(ndata + 1);
  }
  return out;
}

namespace raid56 {

namespace {

using Units = std::span<const std::span<const uint8_t>>;

constexpr unsigned k_none = UINT_MAX;

// Every buffer of one call has `len` bytes (ISA-L takes it as an int), except the data units
// being rebuilt (skip_a, skip_b), which are not read; those must name a data unit.
void check_units(Units data, size_t len, std::initializer_list<size_t> others,
                 unsigned skip_a = k_none, unsigned skip_b = k_none)
{
  std::string why;
  if (data.empty() || len > INT_MAX) {
    why = std::to_string(data.size()) + " data units of " + std::to_string(len) + " bytes";
  }
  for (size_t n : others) {
    if (n != len) {
      why =
        "a parity or output buffer of " + std::to_string(n) + " bytes, not " + std::to_string(len);
    }
  }
  for (unsigned j = 0; j < data.size(); ++j) {
    if (j != skip_a && j != skip_b && data[j].size() != len) {
      why = "data unit " + std::to_string(j) + " of " + std::to_string(data[j].size()) +
            " bytes, not " + std::to_string(len);
    }
  }
  if ((skip_a != k_none && skip_a >= data.size()) || (skip_b != k_none && skip_b >= data.size()) ||
      (skip_a != k_none && skip_a == skip_b)) {
    why = "data units to rebuild out of range or equal";
  }
  if (!why.empty()) {
    throw Error(Errc::internal, "raid56: " + why);
  }
}

// g^e in GF(2^8) (g = 2, polynomial 0x11d, which ISA-L's gf_mul uses as well).
uint8_t gf_pow2(unsigned e)
{
  uint8_t x = 1;
  for (unsigned i = 0; i < e; ++i) {
    x = gf_mul(x, 2);
  }
  return x;
}

// outs[r] = sum over i of coefs[r * srcs.size() + i] * srcs[i], with ISA-L's table-driven
// encoder (any length and alignment; SIMD when the CPU has it).
void combine(std::vector<const uint8_t*> srcs, const std::vector<uint8_t>& coefs,
             std::vector<uint8_t*> outs, size_t len)
{
  const int k = static_cast<int>(srcs.size());
  const int rows = static_cast<int>(outs.size());
  std::vector<unsigned char> tables(32 * srcs.size() * outs.size());
  std::vector<unsigned char> matrix(coefs.begin(), coefs.end());
  ec_init_tables(k, rows, matrix.data(), tables.data());
  // ec_encode_data only reads the sources; its prototype is not const-correct.
  std::vector<unsigned char*> in;
  in.reserve(srcs.size());
  for (const uint8_t* s : srcs) {
    in.push_back(const_cast<unsigned char*>(s));
  }
  ec_encode_data(static_cast<int>(len), k, rows, tables.data(), in.data(), outs.data());
}

// ISA-L's xor_gen/pq_gen need 32-byte aligned buffers and a multiple of 32 bytes; they return
// non-zero for layouts they cannot take (also too few sources), and then combine() does it.
bool simd_layout(const std::vector<void*>& bufs, size_t len)
{
  if (len == 0 || len % 32 != 0) {
    return false;
  }
  for (void* b : bufs) {
    if (reinterpret_cast<uintptr_t>(b) % 32 != 0) {
      return false;
    }
  }
  return true;
}

std::vector<void*> source_ptrs(Units data)
{
  std::vector<void*> v;
  v.reserve(data.size() + 2);
  for (const auto& d : data) {
    v.push_back(const_cast<uint8_t*>(d.data())); // read only, see combine()
  }
  return v;
}

std::vector<const uint8_t*> const_ptrs(Units data)
{
  std::vector<const uint8_t*> v;
  v.reserve(data.size() + 2);
  for (const auto& d : data) {
    v.push_back(d.data());
  }
  return v;
}

} // namespace

void gen_p(Units data, std::span<uint8_t> p)
{
  check_units(data, p.size(), {});
  auto ptrs = source_ptrs(data);
  ptrs.push_back(p.data());
  if (simd_layout(ptrs, p.size()) &&
      xor_gen(static_cast<int>(ptrs.size()), static_cast<int>(p.size()), ptrs.data()) == 0) {
    return;
  }
  combine(const_ptrs(data), std::vector<uint8_t>(data.size(), 1), {p.data()}, p.size());
}

void gen_pq(Units data, std::span<uint8_t> p, std::span<uint8_t> q)
{
  check_units(data, p.size(), {q.size()});
  auto ptrs = source_ptrs(data);
  ptrs.push_back(p.data());
  ptrs.push_back(q.data());
  if (simd_layout(ptrs, p.size()) &&
      pq_gen(static_cast<int>(ptrs.size()), static_cast<int>(p.size()), ptrs.data()) == 0) {
    return;
  }
  std::vector<uint8_t> coefs(2 * data.size());
  for (unsigned j = 0; j < data.size(); ++j) {
    coefs[j] = 1;
    coefs[data.size() + j] = gf_pow2(j);
  }
  combine(const_ptrs(data), coefs, {p.data(), q.data()}, p.size());
}

bool p_matches(Units data, std::span<const uint8_t> p)
{
  sys::AlignedBuffer want(p.size());
  gen_p(data, {want.data(), p.size()});
  return std::memcmp(want.data(), p.data(), p.size()) == 0;
}

bool q_matches(Units data, std::span<const uint8_t> q)
{
  sys::AlignedBuffer want_p(q.size());
  sys::AlignedBuffer want_q(q.size());
  gen_pq(data, {want_p.data(), q.size()}, {want_q.data(), q.size()});
  return std::memcmp(want_q.data(), q.data(), q.size()) == 0;
}

void rebuild_from_p(Units data, unsigned missing, std::span<const uint8_t> p,
                    std::span<uint8_t> out)
{
  check_units(data, out.size(), {p.size()}, missing);
  // D_missing = P ^ (xor of the other data units).
  std::vector<const uint8_t*> srcs;
  for (unsigned j = 0; j < data.size(); ++j) {
    if (j != missing) {
      srcs.push_back(data[j].data());
    }
  }
  srcs.push_back(p.data());
  combine(srcs, std::vector<uint8_t>(srcs.size(), 1), {out.data()}, out.size());
}

void rebuild_from_q(Units data, unsigned missing, std::span<const uint8_t> q,
                    std::span<uint8_t> out)
{
  check_units(data, out.size(), {q.size()}, missing);
  // Q = sum g^j D_j, so D_a = g^-a * (Q ^ sum over j != a of g^j D_j).
  const uint8_t inv = gf_inv(gf_pow2(missing));
  std::vector<const uint8_t*> srcs;
  std::vector<uint8_t> coefs;
  for (unsigned j = 0; j < data.size(); ++j) {
    if (j != missing) {
      srcs.push_back(data[j].data());
      coefs.push_back(gf_mul(gf_pow2(j), inv));
    }
  }
  srcs.push_back(q.data());
  coefs.push_back(inv);
  combine(srcs, coefs, {out.data()}, out.size());
}

void rebuild_two(Units data, unsigned a, unsigned b, std::span<const uint8_t> p,
                 std::span<const uint8_t> q, std::span<uint8_t> out_a, std::span<uint8_t> out_b)
{
  check_units(data, out_a.size(), {p.size(), q.size(), out_b.size()}, a, b);
  // With Pxy = P ^ sum_{j!=a,b} D_j and Qxy = Q ^ sum_{j!=a,b} g^j D_j:
  //   D_a ^ D_b = Pxy and g^a D_a ^ g^b D_b = Qxy, so
  //   D_a = c * (Qxy ^ g^b Pxy) with c = 1 / (g^a ^ g^b), and D_b = Pxy ^ D_a.
  // Expanded into one coefficient per source (other D_j, then P, then Q) for each output.
  const uint8_t gb = gf_pow2(b);
  const uint8_t c = gf_inv(gf_pow2(a) ^ gb);
  std::vector<const uint8_t*> srcs;
  std::vector<uint8_t> row_a;
  std::vector<uint8_t> row_b;
  for (unsigned j = 0; j < data.size(); ++j) {
    if (j != a && j != b) {
      srcs.push_back(data[j].data());
      const uint8_t ka = gf_mul(gf_pow2(j) ^ gb, c);
      row_a.push_back(ka);
      row_b.push_back(1 ^ ka);
    }
  }
  srcs.push_back(p.data());
  row_a.push_back(gf_mul(gb, c));
  row_b.push_back(1 ^ gf_mul(gb, c));
  srcs.push_back(q.data());
  row_a.push_back(c);
  row_b.push_back(c);
  std::vector<uint8_t> coefs(row_a);
  coefs.insert(coefs.end(), row_b.begin(), row_b.end());
  combine(srcs, coefs, {out_a.data(), out_b.data()}, out_a.size());
}

} // namespace raid56
} // namespace vmcsum::btrfs
