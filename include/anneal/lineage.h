// anneal lineage: the anneal.lineage.* keys every GGUF file anneal writes carries (where it
// came from: parent hashes, the exact command, the effective options, tool, UTC time), and
// reading them back. docs/formats.md "Lineage" is the specification.
#ifndef ANNEAL_LINEAGE_H
#define ANNEAL_LINEAGE_H

#include "anneal/base.h"
#include "anneal/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

// Keys, all strings except parents (an array of strings).
#define ANNEAL_LINEAGE_KEY_PARENTS "anneal.lineage.parents"
#define ANNEAL_LINEAGE_KEY_COMMAND "anneal.lineage.command"
#define ANNEAL_LINEAGE_KEY_CONFIG "anneal.lineage.config"
#define ANNEAL_LINEAGE_KEY_TOOL "anneal.lineage.tool"
#define ANNEAL_LINEAGE_KEY_CREATED "anneal.lineage.created"

// Roles are one word of [a-z0-9_-], at most this many bytes ("input", "vocab", "base",
// "teacher", "dataset", "adapter", ...).
#define ANNEAL_LINEAGE_ROLE_MAX 32
// Environment variable that replaces the creation time (same "YYYY-MM-DDTHH:MM:SSZ" form),
// so that tests and reproducible builds get identical bytes.
#define ANNEAL_LINEAGE_TIME_ENV "ANNEAL_LINEAGE_TIME"

// One parent: stored as the string "sha256:<64 hex> <role> <path>" (path = the rest).
typedef struct anneal_lineage_parent {
    char sha256[65];  // 64 lowercase hex digits of the parent file's SHA-256
    const char *role; // see ANNEAL_LINEAGE_ROLE_MAX
    const char *path; // as given on the command line; informational, the hash is the identity
} anneal_lineage_parent;

typedef struct anneal_lineage {
    const anneal_lineage_parent *parents;
    size_t n_parents;
    const char *command; // "anneal quantize in.gguf out.gguf q4_K_M", shell-quoted words
    const char *config;  // a JSON object: the effective options that shape the output
    const char *tool;    // "anneal <version>"
    const char *created; // "YYYY-MM-DDTHH:MM:SSZ" (UTC)
} anneal_lineage;

// Fills p for the file at path: hashes it (SHA-256 of the whole file). role and path are
// borrowed (they must outlive p's use).
anneal_status anneal_lineage_parent_file(anneal_lineage_parent *p, const char *role,
                                         const char *path, anneal_err *err);

// "anneal" followed by argv[0..argc), each word shell-quoted when it needs it (POSIX sh
// single quotes), so the string can be pasted back into a shell. Caller frees with
// anneal_free; NULL when out of memory.
char *anneal_lineage_command(int argc, char *const *argv);

// The creation time to record into buf (>= 21 bytes): $ANNEAL_LINEAGE_TIME when set (it must
// have the form YYYY-MM-DDTHH:MM:SSZ with a valid date, else ANNEAL_ERR_INVALID_ARG), else now.
anneal_status anneal_lineage_time(char *buf, size_t cap, anneal_err *err);

// Sets the five anneal.lineage.* keys in w (replacing any copied from a parent file). From
// lin it takes parents, command and config (NULL config = "{}"); tool is always
// "anneal <this version>" and created comes from anneal_lineage_time (lin->tool and
// lin->created are ignored). Checks: roles well formed, hashes 64 lowercase hex, no
// newline in paths or the command, config a JSON object -> ANNEAL_ERR_INVALID_ARG.
anneal_status anneal_lineage_set(anneal_gguf_writer *w, const anneal_lineage *lin, anneal_err *err);

// Reads the keys back from g. *out is one allocation holding every string (free with
// anneal_lineage_free). ANNEAL_ERR_NOT_FOUND when g has no anneal.lineage.* key at all;
// ANNEAL_ERR_FORMAT (naming the key) when a key is missing, has the wrong type, or a parent
// string is malformed. Strings are NUL-terminated copies (a NUL inside a value is a format
// error).
anneal_status anneal_lineage_read(const anneal_gguf *g, anneal_lineage **out, anneal_err *err);
void anneal_lineage_free(anneal_lineage *lin);

#ifdef __cplusplus
}
#endif
#endif
