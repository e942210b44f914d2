#!/usr/bin/env python3
"""Where a tgsess run's CPU goes, by library and by phase, from a perf recording with call graphs.

    perf record -F 299 --call-graph dwarf,16384 -o run.data -- tgsess backup --root R
    perf script -i run.data -F comm,ip,sym,dso | python3 scripts/perf_phases.py [--top 40]

Prints the share of samples whose innermost frame is in each library (self time), then, for every
function of the Jobs and Store modules, the share of samples with it anywhere on the stack
(inclusive, each function counted once per sample), by its demangled type and method name.
BENCHMARKS.md quotes these figures as its profiles.
"""
import argparse
import collections
import re
import sys


def stacks(lines):
    """One list of (symbol, library) frames per sample, innermost first."""
    frames = []
    for line in lines:
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")):
            # A sample's header line: "tgsess" (the command name).
            if frames:
                yield frames
            frames = []
            continue
        fields = line.split()
        if len(fields) >= 2:
            frames.append((fields[1], fields[-1].strip("()").rsplit("/", 1)[-1]))
    if frames:
        yield frames


def name(symbol):
    """'Module.Type.method' from a Swift mangled symbol of Jobs or Store; None for the rest."""
    match = re.match(r"\$s(4Jobs|5Store)(.*)", symbol)
    if not match:
        return None
    rest, parts, i = match.group(2), [], 0
    while i < len(rest) and len(parts) < 3:
        length = re.match(r"\d+", rest[i:])
        if not length:
            break
        i += len(length.group(0))
        parts.append(rest[i : i + int(length.group(0))])
        i += int(length.group(0))
        while i < len(rest) and not rest[i].isdigit():
            i += 1
    return match.group(1)[1:] + "." + ".".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--top", type=int, default=40, help="functions to print (default 40)")
    options = parser.parse_args()
    count, libraries, functions = 0, collections.Counter(), collections.Counter()
    for frames in stacks(sys.stdin):
        count += 1
        libraries[frames[0][1]] += 1
        seen = {name(symbol) for symbol, _ in frames} - {None}
        functions.update(seen)
    if count == 0:
        sys.exit("perf_phases.py: no samples on stdin (perf script -F comm,ip,sym,dso)")
    print(f"samples {count}")
    print("self time by library:")
    for library, n in libraries.most_common(8):
        print(f"  {100 * n / count:5.1f} %  {library}")
    print("inclusive, Jobs and Store functions:")
    for function, n in functions.most_common(options.top):
        print(f"  {100 * n / count:5.1f} %  {function}")


if __name__ == "__main__":
    main()
