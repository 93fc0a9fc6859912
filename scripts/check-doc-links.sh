#!/usr/bin/env bash
# Checks every relative link in README.md and docs/**/*.md: the target file exists, and a
# #fragment names a heading of the target (GitHub's anchors: lower case, punctuation dropped,
# spaces to hyphens, -1, -2 ... for repeated headings). Links to http(s)/mailto are not checked.
# Links inside fenced code blocks and inline code are ignored.
#
#   scripts/check-doc-links.sh            # from anywhere in the repository; exit 1 on a broken link
#
# Needs only bash, awk, sed, grep (no python), so CI can run it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export LC_ALL=C.UTF-8

# GitHub's anchors of a markdown file, one per line
anchors() {
    awk '/^```/ { fence = !fence; next } !fence && /^#+ / { sub(/^#+ +/, ""); sub(/ +#*$/, ""); print }' "$1" |
        sed -E 's/\[([^]]*)\]\([^)]*\)/\1/g' |           # [text](link) -> text
        tr '[:upper:]' '[:lower:]' |
        sed 's/[^[:alnum:] _-]//g; s/ /-/g' |
        awk '{ n = seen[$0]++; print (n ? $0 "-" n : $0) }'
}

# "link" per line for the relative links of a markdown file (code removed first)
links() {
    awk '/^```/ { fence = !fence; next } !fence { print }' "$1" |
        sed 's/`[^`]*`//g' |
        grep -oE '\]\([^) ]+( "[^"]*")?\)' |
        sed -E 's/^\]\(//; s/( "[^"]*")?\)$//' |
        grep -vE '^(https?:|mailto:)' || true
}

fail=0
checked=0
while IFS= read -r file; do
    dir=$(dirname "$file")
    while IFS= read -r link; do
        [ -n "$link" ] || continue
        checked=$((checked + 1))
        path=${link%%#*}
        frag=
        [[ $link == *"#"* ]] && frag=${link#*#}
        if [ -z "$path" ]; then
            target=$file
        else
            target=$dir/$path
        fi
        if [ ! -e "$target" ]; then
            echo "$file: broken link ($link): $target does not exist"
            fail=1
            continue
        fi
        if [ -n "$frag" ] && [[ $target == *.md ]]; then
            if ! anchors "$target" | grep -qxF -- "$frag"; then
                echo "$file: broken link ($link): no heading with anchor #$frag in $target"
                fail=1
            fi
        fi
    done < <(links "$file")
done < <({ [ -f README.md ] && echo README.md; find docs -name '*.md' | sort; })

if [ $fail -ne 0 ]; then
    echo "check-doc-links: broken links found ($checked links checked)"
    exit 1
fi
echo "check-doc-links: $checked links OK"
