// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// One directory whose reading fails on demand (fail_listing.c): the unit tests link it in and
// set the rule here; the integration tests preload it into vmcsum and set it from the
// environment.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

// getdents64(2) of the one directory with this st_dev and st_ino fails with EIO once
// `reads_before` reads of it have succeeded; a negative `reads_before` turns the rule off. The
// count of reads starts again at 0.
void vmcsum_fail_listing_set(unsigned long long dev, unsigned long long ino, long reads_before);
// Reads of that directory since the rule was set, the failing ones included.
long vmcsum_fail_listing_reads(void);

#ifdef __cplusplus
}
#endif
