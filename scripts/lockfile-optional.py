#!/usr/bin/env python3
"""Restores package-lock.json entries that `npm install` drops.

node-unix-socket (sd_notify's Unix datagram socket) lists prebuilt binaries
for seven platforms as optional dependencies, but only the linux-x64 ones are
published. `npm install` leaves the unpublished ones out of the lock file, and
`npm ci` then refuses the lock ("Missing: node-unix-socket-darwin-arm64@ from
lock file"). Entries with their os/cpu let `npm ci` skip them as foreign
platforms. Run after any `npm install`; test/lockfile.test.ts checks it.
"""
import json
import sys
from collections import OrderedDict

LOCK = sys.argv[1] if len(sys.argv) > 1 else 'package-lock.json'
PLATFORMS = {  # suffix: (os, cpu, libc)
    'darwin-arm64': ('darwin', 'arm64', None),
    'darwin-x64': ('darwin', 'x64', None),
    'linux-arm-gnueabihf': ('linux', 'arm', 'glibc'),
    'linux-arm64-gnu': ('linux', 'arm64', 'glibc'),
    'linux-arm64-musl': ('linux', 'arm64', 'musl'),
}

with open(LOCK) as f:
    lock = json.load(f, object_pairs_hook=OrderedDict)
packages = lock['packages']
parent = packages.get('node_modules/node-unix-socket')
if parent is None:
    sys.exit(0)
version = parent['version']
out = OrderedDict()
for key, value in packages.items():
    if key.startswith('node_modules/node-unix-socket-') and key[len('node_modules/node-unix-socket-'):] in PLATFORMS:
        continue
    out[key] = value
    if key == 'node_modules/node-unix-socket':
        for suffix, (os_, cpu, libc) in PLATFORMS.items():
            entry = OrderedDict([('version', version), ('cpu', [cpu])])
            if libc:
                entry['libc'] = [libc]
            entry.update([('license', 'MIT'), ('optional', True), ('os', [os_]), ('engines', {'node': '>= 10'})])
            out['node_modules/node-unix-socket-' + suffix] = entry
lock['packages'] = out
with open(LOCK, 'w') as f:
    f.write(json.dumps(lock, indent=2) + '\n')
