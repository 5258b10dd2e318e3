"""Fail when a file imports anything outside the Python standard library."""
import ast
import sys

bad = []
for path in sys.argv[1:]:
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top != "__future__" and top not in sys.stdlib_module_names:
                bad.append(f"{path}:{node.lineno}: imports {name}, which is not in the standard library")
print("\n".join(bad) or "stdlib-only: ok")
sys.exit(1 if bad else 0)
