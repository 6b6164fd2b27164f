"""Check the token text `saeplug record --model` wrote (tests/record.rs).

usage: check_vocab_text.py MODEL.gguf REC_DIR

Independent of saeplug's GGUF reader: the vocabulary is read by the `gguf`
package and GPT-2 byte-level tokens are decoded with GPT-2's own bytes_to_unicode
table (as written in OpenAI's encoder.py). Every token of every example must have
that text. Prints "ok N tokens"."""
import json
import os
import sys

import gguf

model, rec = sys.argv[1:3]
r = gguf.GGUFReader(model)
f = r.fields["tokenizer.ggml.tokens"]
toks = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs = bs[:]
n = 0
for b in range(256):
    if b not in bs:
        bs.append(b)
        cs.append(256 + n)
        n += 1
dec = {chr(c): b for b, c in zip(bs, cs)}


def text(t):
    out = bytearray()
    for ch in toks[t]:
        out += bytes([dec[ch]]) if ch in dec else ch.encode()
    return out.decode("utf-8", "replace")


index = json.load(open(os.path.join(rec, "index.json")))
checked = 0
for c in index["chunks"]:
    for ft in json.load(open(os.path.join(rec, c)))["features"]:
        exs = list(ft["top"]) + [s for iv in ft["intervals"] for s in iv["samples"]]
        for e in exs:
            assert len(e["text"]) == len(e["tokens"]), e
            for t, s in zip(e["tokens"], e["text"]):
                assert text(t) == s, (t, s, text(t))
                checked += 1
assert checked > 0, "no tokens to check"
print("ok", checked, "tokens")
