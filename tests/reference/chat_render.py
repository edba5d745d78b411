#!/usr/bin/python3
"""Renders chat templates with Jinja2 the way Hugging Face transformers does and writes the
expected outputs that tests/unit/test_chat.c compares anneal_chat_apply against.

Run from the repository root:  /usr/bin/python3 tests/reference/chat_render.py
Needs only python3-jinja2. Reads:
  $ANNEAL_SHARED/fixtures/chat-templates/*.jinja   the real templates (from the models'
                                                   tokenizer_config.json)
  tests/fixtures/chat-templates/*.jinja            templates written down from their public
                                                   definitions: llama2 (meta-llama/Llama-2-7b-
                                                   chat-hf), chatml (the generic ChatML one),
                                                   zephyr (HuggingFaceH4/zephyr-7b-beta),
                                                   llama3.0 (Meta-Llama-3-8B-Instruct), gemma3
                                                   (google/gemma-3-*-it, text-only part)
  tests/fixtures/chat-templates/conversations.json
Writes tests/fixtures/chat-templates/conversations-random.json (seeded, deterministic) and
tests/fixtures/chat-templates/expected/<template file stem>.json: a list of cases
  {"conversation", "add_generation_prompt", "expect", ...} where expect is
  "text"         anneal must render "text" minus its leading BOS text (anneal leaves BOS
                 to the tokenizer);
  "error"        the real template raises ("message"); anneal must fail too;
  "anneal_error" the real template renders ("reference") but anneal rejects the input on
                 purpose (an unknown role, or a system message that is not first where the
                 template would silently drop it);
  "deviation"    the real template raises but anneal renders on purpose ("reason").
"""
import json
import os
import random
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("ANNEAL_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
REAL = os.path.join(SHARED, "fixtures", "chat-templates")
OURS = os.path.join(ROOT, "tests", "fixtures", "chat-templates")

# (template file, anneal template name, bos_token, eos_token) with the tokens each model's
# tokenizer_config.json sets (None: the model defines none, the variable stays undefined).
SOURCES = [
    (os.path.join(REAL, "Qwen-Qwen2.5-7B-Instruct.jinja"), "qwen2", None, "<|im_end|>"),
    (os.path.join(REAL, "meta-llama-Llama-3.1-8B-Instruct.jinja"), "llama3",
     "<|begin_of_text|>", "<|eot_id|>"),
    (os.path.join(REAL, "mistralai-Mistral-Nemo-Instruct-2407.jinja"), "mistral", "<s>", "</s>"),
    (os.path.join(REAL, "microsoft-Phi-3.5-mini-instruct.jinja"), "phi3", "<s>", "<|endoftext|>"),
    (os.path.join(REAL, "google-gemma-2-2b-it.jinja"), "gemma", "<bos>", "<eos>"),
    (os.path.join(OURS, "gemma3.jinja"), "gemma", "<bos>", "<eos>"),
    (os.path.join(OURS, "chatml.jinja"), "chatml", None, "<|im_end|>"),
    (os.path.join(OURS, "llama2.jinja"), "llama2", "<s>", "</s>"),
    (os.path.join(OURS, "llama3.0.jinja"), "llama3.0", "<|begin_of_text|>", "<|eot_id|>"),
    (os.path.join(OURS, "zephyr.jinja"), "zephyr", "<s>", "</s>"),
]

# What anneal accepts per template: the roles, and whether a system message may only come
# first (the templates that fold it into a user turn).
POLICY = {
    "chatml": ({"system", "user", "assistant", "tool"}, False),
    "qwen2": ({"system", "user", "assistant", "tool"}, False),
    "llama2": ({"system", "user", "assistant"}, True),
    "llama3": ({"system", "user", "assistant", "tool", "ipython"}, False),
    "llama3.0": ({"system", "user", "assistant", "tool", "ipython"}, False),
    "mistral": ({"system", "user", "assistant"}, True),
    "phi3": ({"system", "user", "assistant"}, False),
    "gemma": ({"system", "user", "assistant"}, True),
    "zephyr": ({"system", "user", "assistant"}, False),
}


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers replaces Jinja's tojson (which escapes HTML characters) with json.dumps
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def environment():
    # the settings of transformers' chat template compiler
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def anneal_rejects(name, messages):
    roles, system_first = POLICY[name]
    for i, m in enumerate(messages):
        if m["role"] not in roles:
            return True
        if system_first and m["role"] == "system" and i != 0:
            return True
    return False


# Characters the random conversations are made of: Python's whitespace (what trim strips),
# look-alikes that are not whitespace (U+180E, U+200B, U+FEFF), multi-byte and JSON-special
# characters.
ALPHABET = ["a", "Z", "7", " ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85",
            "\xa0", "\u1680", "\u2000", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f",
            "\u3000", "\u180e", "\u200b", "\ufeff", "é", "世", "🙂", "<", "{", "\"", "\\",
            "\x01", "\x7f"]


def random_conversations(count=12, seed=20261129):
    """Deterministic conversations (valid for every template: optional system message, then
    user/assistant alternating) whose contents stress whitespace trimming and escaping."""
    rng = random.Random(seed)
    out = {}
    for k in range(count):
        msgs = []
        if rng.random() < 0.5:
            msgs.append({"role": "system", "content": random_text(rng)})
        for i in range(rng.randint(1, 4)):
            msgs.append({"role": "user" if i % 2 == 0 else "assistant",
                         "content": random_text(rng)})
        out[f"rand_{k:02d}"] = msgs
    return out


def random_text(rng):
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 10)))


def main():
    with open(os.path.join(OURS, "conversations.json"), encoding="utf-8") as f:
        conversations = json.load(f)
    generated = random_conversations()
    with open(os.path.join(OURS, "conversations-random.json"), "w", encoding="utf-8") as f:
        json.dump(generated, f, ensure_ascii=False, indent=1)
        f.write("\n")
    conversations.update(generated)
    env = environment()
    out_dir = os.path.join(OURS, "expected")
    os.makedirs(out_dir, exist_ok=True)
    for path, name, bos, eos in SOURCES:
        with open(path, encoding="utf-8") as f:
            template = env.from_string(f.read())
        tokens = {}
        if bos is not None:
            tokens["bos_token"] = bos
        if eos is not None:
            tokens["eos_token"] = eos
        cases = []
        for conv, messages in conversations.items():
            for gen in (False, True):
                case = {"conversation": conv, "add_generation_prompt": gen}
                try:
                    text = template.render(messages=messages, add_generation_prompt=gen,
                                           **tokens)
                    err = None
                except jinja2.exceptions.TemplateError as e:
                    text, err = None, str(e)
                if anneal_rejects(name, messages):
                    case["expect"] = "anneal_error"
                    case["reference"] = text if err is None else "raises: " + err
                elif err is not None and name == "gemma" and err == "System role not supported":
                    case["expect"] = "deviation"
                    case["reason"] = ("Gemma 2 raises on a system message; anneal prepends it "
                                      "to the first user turn as Gemma 3 does (see gemma3.json)")
                elif err is not None:
                    case["expect"] = "error"
                    case["message"] = err
                else:
                    case["expect"] = "text"
                    case["text"] = text
                cases.append(case)
        stem = os.path.splitext(os.path.basename(path))[0]
        doc = {"template": name, "source": os.path.relpath(path, os.path.dirname(ROOT)),
               "bos_token": bos, "eos_token": eos, "jinja2": jinja2.__version__,
               "cases": cases}
        with open(os.path.join(out_dir, stem + ".json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")
        counts = {}
        for c in cases:
            counts[c["expect"]] = counts.get(c["expect"], 0) + 1
        print(f"{stem}.json: {name}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
