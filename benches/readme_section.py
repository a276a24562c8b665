"""Puts a generated section into benches/README.md: replaces the text between its
`<!-- NAME:begin` and `<!-- NAME:end -->` markers, or appends it under HEADING the first time.

usage: python3 benches/readme_section.py NAME HEADING SECTION
"""
import re
import sys

name, heading, new = sys.argv[1:4]
path = "benches/README.md"
text = open(path).read()
if f"<!-- {name}:begin" in text:
    text = re.sub(
        rf"<!-- {name}:begin.*?<!-- {name}:end -->", lambda _: new, text, flags=re.S
    )
else:
    text += f"\n{heading}\n\n{new}\n"
open(path, "w").write(text)
