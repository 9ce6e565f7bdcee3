#!/usr/bin/env python3
"""Runs README.md's walkthrough (the ```sh blocks between the walkthrough markers) in one
bash session, as a new user pasting them would, and checks every answer against the
README's own `# ...` lines under each command:

- `# NNN {...}`: the HTTP statuses of the command's curl calls, in order; every
  `"key":value` whose value is a number, true, false, null or a string without `...` must
  be in the answer exactly, and every other `"key":` must be there too;
- `# text`: the text must be in the command's output;
- every command must exit 0, and `$SURVEY` must be a number afterwards.

    scripts/readme_walkthrough.py --readme README.md --port 8080 --local-dir .local

Prints `N passed, N failed` last; exits 1 if any check failed.
"""
import argparse
import os
import re
import subprocess
import sys

START, END = "<!-- walkthrough:start -->", "<!-- walkthrough:end -->"


def expectations(lines):
    """The README's `#` lines under a command, an answer's continuation lines joined to it."""
    joined = []
    for line in lines:
        if joined and re.match(r"^\d{3}\b", joined[-1]) and not re.match(r"^\d{3}\b", line):
            joined[-1] += line
        else:
            joined.append(line)
    return joined


def units(readme):
    """(command text, expectation lines) for each command of the walkthrough, in order."""
    text = readme[readme.index(START) + len(START):readme.index(END)]
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        command, expected = [], []
        for line in block.splitlines():
            if line.startswith("#"):
                expected.append(line[1:].strip())
                continue
            if expected:
                found.append(("\n".join(command), expectations(expected)))
                command, expected = [], []
            command.append(line)
        if any(line.strip() for line in command):
            found.append(("\n".join(command), expectations(expected)))
    return found


def script(found, port, local_dir):
    lines = [
        "set -u",
        # The statuses, after whatever the command prints, on standard error (a capture in
        # $(...) keeps standard output for itself). curl writes its standard error a piece at
        # a time, and a `| tee /dev/stderr` in the command writes the answer to the same pipe
        # meanwhile: curl's part is collected in a file and written in one go afterwards, so
        # the two can only come in either order, never interleaved.
        "curl() { local e rc; e=$(mktemp); command curl \"$@\" -w '%{stderr}\\n@@@HTTP %{http_code}\\n' 2>\"$e\"; rc=$?;"
        " cat \"$e\" >&2; rm -f \"$e\"; return \"$rc\"; }",
        f"export SURVEYD_LOCAL_DIR={local_dir} PORT={port}",
    ]
    for index, (command, _) in enumerate(found):
        command = command.replace("localhost:8080", f"localhost:{port}").replace(".local/", local_dir.rstrip("/") + "/")
        # The answer may end without a line break: the marker starts a line of its own.
        lines += [f"printf '\\n@@@UNIT {index}\\n'", command, f"rc=$?; printf '\\n@@@RC {index} %s\\n' \"$rc\""]
    lines.append("echo \"@@@VARS ${SURVEY:-} ${DOOMED:-}\"")
    return "\n".join(lines) + "\n"


def check(found, output):
    parts = re.split(r"^@@@UNIT (\d+)\n", output, flags=re.M)
    outputs = {int(parts[i]): parts[i + 1] for i in range(1, len(parts) - 1, 2)}
    passed, failed = 0, 0

    def report(ok, what):
        nonlocal passed, failed
        print(("ok    " if ok else "FAIL  ") + what)
        if ok:
            passed += 1
        else:
            failed += 1

    for index, (command, expected) in enumerate(found):
        title = command.strip().splitlines()[0][:90]
        out = outputs.get(index, "")
        rc = re.search(rf"^@@@RC {index} (\d+)$", out, re.M)
        report(rc is not None and rc.group(1) == "0", f"[{index}] {title}: exits 0")
        statuses = re.findall(r"^@@@HTTP (\d{3})$", out, re.M)
        wanted = [line[:3] for line in expected if re.match(r"^\d{3}\b", line)]
        if wanted:
            report(statuses == wanted, f"[{index}] statuses {wanted} (got {statuses})")
        body = re.sub(r"^@@@.*$", "", out, flags=re.M)
        for line in expected:
            if re.match(r"^\d{3}\b", line):
                exact = re.findall(r'"(\w+)":(-?\d+(?:\.\d+)?|true|false|null|"[^"]*")', line)
                for key, value in exact:
                    if "..." in value:
                        report(f'"{key}":' in body, f"[{index}] has \"{key}\"")
                    else:
                        report(f'"{key}":{value}' in body, f"[{index}] \"{key}\":{value}")
                for key in set(re.findall(r'"(\w+)":', line)) - {k for k, _ in exact}:
                    report(f'"{key}":' in body, f"[{index}] has \"{key}\"")
            elif line:
                report(line in body, f"[{index}] says {line!r}")
        if failed and not (rc and rc.group(1) == "0"):
            print("      output:\n" + "\n".join("      | " + l for l in out.strip().splitlines()[-15:]))
    variables = re.search(r"^@@@VARS (.*)$", output, re.M)
    names = (variables.group(1).split() if variables else []) + ["", ""]
    report(names[0].isdigit(), f"$SURVEY holds the new survey's id ({names[0]!r})")
    return passed, failed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--local-dir", default=".local")
    args = parser.parse_args()
    found = units(open(args.readme, encoding="utf-8").read())
    if not found:
        raise SystemExit("no walkthrough found between the markers")
    result = subprocess.run(
        ["bash"], input=script(found, args.port, os.path.abspath(args.local_dir)), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    passed, failed = check(found, result.stdout)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
