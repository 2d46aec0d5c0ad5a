#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 The vmcsum authors
"""Validates vmcsum --json documents against the JSON Schemas of tests/schema/.

usage: validate.py SCHEMA.json DOCUMENT.json...
       validate.py --by-name DOCUMENT.json...
The first form checks every document against SCHEMA.json. --by-name picks for each document the
schema its own "schema" key names ("vmcsum.audit/1" -> audit.json next to this script), so a
test can keep every document it made, vmcsum.error/1 ones included.
Exit 0: every document is valid; 1: some is not (each error printed with its JSON path);
77: python3-jsonschema is missing (the integration tests' "skipped").
"""
import json
import os
import re
import sys

try:
    import jsonschema
except ImportError:
    print("SKIP: python3-jsonschema is not installed", file=sys.stderr)
    sys.exit(77)


def load_validator(path):
    with open(path, encoding="utf-8") as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 64
    by_name = argv[1] == "--by-name"
    here = os.path.dirname(os.path.abspath(__file__))
    validators = {}
    if not by_name:
        fixed = load_validator(argv[1])
    status = 0
    for path in argv[2:]:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        validator = fixed if not by_name else None
        if by_name:
            m = re.fullmatch(r"vmcsum\.([a-z]+)/[0-9]+", str(doc.get("schema", "")))
            schema_file = os.path.join(here, (m.group(1) if m else "?") + ".json")
            if not m or not os.path.exists(schema_file):
                print(f"{path}: no schema for {doc.get('schema')!r}", file=sys.stderr)
                status = 1
                continue
            if schema_file not in validators:
                validators[schema_file] = load_validator(schema_file)
            validator = validators[schema_file]
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        for e in errors:
            where = "/".join(str(p) for p in e.absolute_path) or "(document)"
            print(f"{path}: {where}: {e.message}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
