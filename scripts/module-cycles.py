#!/usr/bin/env python3
"""Finds import circles between the modules of one crate.

Usage: scripts/module-cycles.py CRATE_SRC_DIR [--graph]

Reads every .rs file under the directory, names its module (src/a/b.rs and
src/a/b/mod.rs are `a::b`), and draws an edge from a module to every other
module that its code names through `crate::`, `super::` or `self::` paths (in
`use` declarations, nested `{}` groups included, and in inline paths).
Comments and string literals are ignored. A path is resolved to the longest
module prefix that exists, so `crate::core::Core` is an edge to `core`.
Prints each strongly connected component of more than one module and exits 1
when there is one; with --graph, prints the edges first.
"""

import os
import re
import sys


def module_of(root, path):
    rel = os.path.relpath(path, root)[: -len(".rs")].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return ()
    return tuple(rel)


def strip_comments_and_strings(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def expand_use_tree(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = tree.strip()
    depth = 0
    for i, ch in enumerate(tree):
        if ch == "{" and depth == 0:
            prefix = tree[:i]
            inner = tree[i + 1 : tree.rindex("}")]
            parts, depth2, start = [], 0, 0
            for j, c in enumerate(inner):
                if c == "{":
                    depth2 += 1
                elif c == "}":
                    depth2 -= 1
                elif c == "," and depth2 == 0:
                    parts.append(inner[start:j])
                    start = j + 1
            parts.append(inner[start:])
            out = []
            for part in parts:
                if part.strip():
                    out += [prefix + p for p in expand_use_tree(part)]
            return out
    return [re.sub(r"\s+as\s+\w+$", "", tree)]


def resolve(module, path, modules):
    """Module named by `path` (a `::` path) written inside `module`."""
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base = module
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    elif module + (segs[0],) in modules:
        base = module
    else:
        return None
    best = base
    for i in range(len(segs)):
        candidate = base + tuple(segs[: i + 1])
        if candidate in modules:
            best = candidate
        else:
            break
    return best


def edges_of(module, text, modules):
    # An inline module (in practice `mod tests { use super::*; ... }` at the
    # end of a file) is the file's child: `super::` there names the file's own
    # module. Code from the first inline module on is read as that child's.
    inline = re.search(r"\bmod\s+(\w+)\s*\{", text)
    if inline:
        child = module + (inline.group(1),)
        inner = edges_of_flat(child, text[inline.end():], modules | {child})
        return (edges_of_flat(module, text[: inline.start()], modules) | inner) - {module, child}
    return edges_of_flat(module, text, modules)


def edges_of_flat(module, text, modules):
    found = set()
    for m in re.finditer(r"\buse\s+([^;]*);", text):
        for path in expand_use_tree(m.group(1)):
            found.add(resolve(module, path, modules))
    rest = re.sub(r"\buse\s+[^;]*;", " ", text)
    for m in re.finditer(r"(?<![\w:])(\w+(?:::\w+)+)", rest):
        found.add(resolve(module, m.group(1), modules))
    return {t for t in found if t is not None and t != module}


def strongly_connected(graph):
    index, low, stack, on_stack, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def name(module):
    return "crate::" + "::".join(module) if module else "crate"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    files = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            if n.endswith(".rs"):
                path = os.path.join(dirpath, n)
                files[module_of(root, path)] = path
    modules = set(files)
    graph = {}
    for module, path in files.items():
        with open(path, encoding="utf-8") as f:
            graph[module] = edges_of(module, strip_comments_and_strings(f.read()), modules)
    if "--graph" in sys.argv:
        for module in sorted(graph):
            for target in sorted(graph[module]):
                print(f"{name(module)} -> {name(target)}")
    circles = [sorted(c) for c in strongly_connected(graph) if len(c) > 1]
    for circle in circles:
        print("import circle: " + ", ".join(name(m) for m in circle))
    if circles:
        sys.exit(1)
    print(f"{len(modules)} modules, {sum(len(e) for e in graph.values())} edges, no import circle")


if __name__ == "__main__":
    main()
