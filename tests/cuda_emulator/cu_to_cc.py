#!/usr/bin/env python3
"""Rewrites a kernels/cuda .cu file into C++ for the CUDA emulator (see emulator.h).

Only the two constructs that are not C++ change; every other line is kept as written,
and a #line directive keeps compiler messages and sanitizer reports on the .cu lines:
  Kernel<<<grid, block[, shared_bytes[, stream]]>>>(args);   (+ .WithMaxThreads(N) under
                                                              __launch_bounds__(N))
      -> ::lsemu::LaunchKernel("Kernel", ::lsemu::Config(grid, block, ...),
                               [](auto... a) { Kernel(a...); }, args);
  __shared__ T name[A][B];        -> T (&name)[A][B] = *::lsemu::SharedArray<T[A][B]>(&site);
  extern __shared__ T name[];     -> T* name = ::lsemu::DynamicShared<T>();
Anything else spelled __shared__ is left alone, and the emulator's headers do not
define __shared__, so a form this script does not know fails to compile instead of
silently becoming something else.

usage: cu_to_cc.py INPUT.cu OUTPUT.cc
"""
import re
import sys

LAUNCH = re.compile(r"\b([A-Za-z_]\w*)\s*<<<(.*?)>>>\s*\((.*?)\)\s*;", re.S)
STATIC_SHARED = re.compile(r"(?<!extern )__shared__\s+([A-Za-z_][\w:<>, ]*?)\s+([A-Za-z_]\w*)((?:\s*\[[^\]]+\])*)\s*;")
BOUNDS = re.compile(r"__launch_bounds__\(\s*([^,)]+)[^)]*\)\s*([A-Za-z_]\w*)\s*\(")
DYNAMIC_SHARED = re.compile(r"extern\s+__shared__\s+([A-Za-z_][\w:<>, ]*?)\s+([A-Za-z_]\w*)\s*\[\s*\]\s*;")


def keep_line_count(original, replacement):
    """Pads the replacement with newlines so later lines keep their numbers."""
    missing = original.count("\n") - replacement.count("\n")
    return replacement + "\n" * max(missing, 0)


def rewrite(text):
    # __launch_bounds__(N) of each kernel: a launch with more threads per block fails.
    bounds = {m.group(2): m.group(1).strip() for m in BOUNDS.finditer(text)}

    def launch(m):
        name, config, args = m.group(1), m.group(2), m.group(3)
        if name in bounds:
            config = f"{config}).WithMaxThreads({bounds[name]}"
        passed = f", {args}" if args.strip() else ""
        out = (f'::lsemu::LaunchKernel("{name}", ::lsemu::Config({config}), '
               f"[](auto... lsemu_args) {{ {name}(lsemu_args...); }}{passed});")
        return keep_line_count(m.group(0), out)

    def static_shared(m):
        type_, name, dims = m.group(1).strip(), m.group(2), re.sub(r"\s+", "", m.group(3))
        ref = f"(&{name}){dims}" if dims else f"&{name}"
        out = (f"static char {name}_lsemu_site; {type_} {ref} = "
               f"*::lsemu::SharedArray<{type_}{dims}>(&{name}_lsemu_site);")
        return keep_line_count(m.group(0), out)

    def dynamic_shared(m):
        type_, name = m.group(1).strip(), m.group(2)
        return keep_line_count(m.group(0), f"{type_}* {name} = ::lsemu::DynamicShared<{type_}>();")

    text = DYNAMIC_SHARED.sub(dynamic_shared, text)
    text = STATIC_SHARED.sub(static_shared, text)
    return LAUNCH.sub(launch, text)


def main():
    source, target = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as f:
        text = f.read()
    # nvcc includes cuda_runtime.h into every .cu file by itself.
    out = f'#include <cuda_runtime.h>\n#line 1 "{source}"\n' + rewrite(text)
    if "<<<" in out:
        sys.exit(f"{source}: a kernel launch this script cannot rewrite is left")
    with open(target, "w", encoding="utf-8") as f:
        f.write(out)


if __name__ == "__main__":
    main()
