// anneal data: the building blocks of the data pipeline (raw text to clean, de-duplicated,
// PII-scrubbed, versioned datasets). Each block works on one document in memory, so the
// pipeline streams and the server's filters can call the same code.
#ifndef ANNEAL_DATA_H
#define ANNEAL_DATA_H

#include "anneal/base.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- PII detection and redaction (src/data/pii.c) ----------------------------------
// What each kind matches, precedence and boundaries: docs/data.md, "PII". Works on bytes
// (invalid UTF-8 and NULs are fine); one left-to-right pass, matches never overlap.

typedef enum anneal_pii_kind {
    ANNEAL_PII_EMAIL,
    ANNEAL_PII_PHONE,
    ANNEAL_PII_IPV4,
    ANNEAL_PII_IPV6,
    ANNEAL_PII_CARD,
    ANNEAL_PII_IBAN,
    ANNEAL_PII_SSN,
    ANNEAL_PII_COUNT
} anneal_pii_kind;

// "email", "phone", "ipv4", "ipv6", "card", "iban", "ssn"; "?" out of range.
const char *anneal_pii_kind_name(anneal_pii_kind kind);

typedef struct anneal_pii_config {
    bool enabled[ANNEAL_PII_COUNT];
    const char *replacement[ANNEAL_PII_COUNT]; // NULL means the default token
} anneal_pii_config;

// All kinds on; tokens "<EMAIL>", "<PHONE>", "<IPV4>", "<IPV6>", "<CARD>", "<IBAN>", "<SSN>".
anneal_pii_config anneal_pii_config_default(void);
// Applies a parsed JSON object (a jansson json_t*) to *cfg: keys are kind names, values
// true/false (switch) or a string (the replacement token, up to 64 bytes; also enables).
// The replacement strings point into `obj`: keep it alive while cfg is used. Unknown keys
// and bad values fail with ANNEAL_ERR_INVALID_ARG naming the key; *cfg unchanged then.
anneal_status anneal_pii_config_from_json(const void *obj, const char *what,
                                          anneal_pii_config *cfg, anneal_err *err);

typedef struct anneal_pii_match {
    anneal_pii_kind kind;
    size_t off, len;
} anneal_pii_match;

// Finds the matches of the enabled kinds (cfg NULL: defaults) in order; writes the first
// `cap` into `out` (may be NULL when cap is 0) and returns how many there are in all.
size_t anneal_pii_find(const anneal_pii_config *cfg, const char *text, size_t len,
                       anneal_pii_match *out, size_t cap);

// Writes `text` with every match replaced by its kind's token into *out (caller-owned,
// grown with anneal_realloc; *out may start NULL with *out_cap 0), NUL-terminated; *out_len
// excludes the NUL. counts (may be NULL) gets the per-kind number of matches added to it.
// Output length = len - sum(match lengths) + sum(token lengths).
anneal_status anneal_pii_redact(const anneal_pii_config *cfg, const char *text, size_t len,
                                char **out, size_t *out_len, size_t *out_cap,
                                size_t counts[ANNEAL_PII_COUNT], anneal_err *err);

// ---- quality filters (src/data/quality.c) -------------------------------------------
// Heuristic document filters after Gopher (Rae et al. 2021, table A1 and appendix A),
// C4 (Raffel et al. 2020, section 2.2) and FineWeb (Penedo et al. 2024), with the default
// thresholds of datatrove's GopherRepetitionFilter, GopherQualityFilter, C4QualityFilter
// and FineWebQualityFilter. docs/data.md ("Quality filters") defines every rule.
// Rules run in this order; the first failing one removes the document.
typedef enum anneal_quality_rule {
    ANNEAL_QR_NONE = 0, // the document passed every enabled rule
    ANNEAL_QR_GOPHER_DUP_PARA_FRAC,
    ANNEAL_QR_GOPHER_DUP_PARA_CHAR_FRAC,
    ANNEAL_QR_GOPHER_DUP_LINE_FRAC,
    ANNEAL_QR_GOPHER_DUP_LINE_CHAR_FRAC,
    ANNEAL_QR_GOPHER_TOP_2GRAM,
    ANNEAL_QR_GOPHER_TOP_3GRAM,
    ANNEAL_QR_GOPHER_TOP_4GRAM,
    ANNEAL_QR_GOPHER_DUP_5GRAM,
    ANNEAL_QR_GOPHER_DUP_6GRAM,
    ANNEAL_QR_GOPHER_DUP_7GRAM,
    ANNEAL_QR_GOPHER_DUP_8GRAM,
    ANNEAL_QR_GOPHER_DUP_9GRAM,
    ANNEAL_QR_GOPHER_DUP_10GRAM,
    ANNEAL_QR_GOPHER_MIN_WORDS,
    ANNEAL_QR_GOPHER_MAX_WORDS,
    ANNEAL_QR_GOPHER_MIN_AVG_WORD_LEN,
    ANNEAL_QR_GOPHER_MAX_AVG_WORD_LEN,
    ANNEAL_QR_GOPHER_HASH_RATIO,
    ANNEAL_QR_GOPHER_ELLIPSIS_RATIO,
    ANNEAL_QR_GOPHER_BULLET_LINES,
    ANNEAL_QR_GOPHER_END_ELLIPSIS_LINES,
    ANNEAL_QR_GOPHER_ALPHA_WORDS,
    ANNEAL_QR_GOPHER_STOP_WORDS,
    ANNEAL_QR_C4_LOREM_IPSUM,
    ANNEAL_QR_C4_CURLY_BRACE,
    ANNEAL_QR_C4_MIN_SENTENCES,
    ANNEAL_QR_FINEWEB_LINE_PUNCT,
    ANNEAL_QR_FINEWEB_SHORT_LINES,
    ANNEAL_QR_FINEWEB_CHAR_DUP,
    ANNEAL_QR_FINEWEB_LIST_RATIO,
    ANNEAL_QR_COUNT
} anneal_quality_rule;

// Every rule has an enable flag and one threshold (unused by c4_lorem_ipsum and
// c4_curly_brace); the remaining fields tune how C4 and FineWeb look at lines.
typedef struct anneal_quality_config {
    bool enabled[ANNEAL_QR_COUNT];
    double threshold[ANNEAL_QR_COUNT];
    int c4_min_words_per_line;            // 3: shorter lines do not count as sentences
    int c4_max_word_length;               // 1000: lines with a longer word are ignored
    int fineweb_short_line_length;        // 30: lines of at most this many characters are short
    bool fineweb_line_punct_exclude_zero; // false: keep documents with no punctuated line
} anneal_quality_config;

typedef struct anneal_quality_result {
    bool keep;
    anneal_quality_rule rule; // the first failing rule, ANNEAL_QR_NONE when kept
    const char *rule_name;    // its stable name ("gopher_min_words"), "" when kept
    double value;             // what the rule measured (a count or a ratio)
    double threshold;         // the threshold it was compared with
} anneal_quality_result;

// Reusable per-thread working memory: grows to the largest document seen, then evaluating
// allocates nothing. Not shareable between threads.
typedef struct anneal_quality_scratch anneal_quality_scratch;

// All rules enabled with the published defaults.
anneal_quality_config anneal_quality_config_default(void);
// Stable name of a rule ("gopher_min_words"); "" for ANNEAL_QR_NONE, "?" out of range.
const char *anneal_quality_rule_name(anneal_quality_rule rule);
// The rule called `name`; ANNEAL_ERR_NOT_FOUND (naming it) when there is none.
anneal_status anneal_quality_rule_parse(const char *name, anneal_quality_rule *out,
                                        anneal_err *err);
// Applies a JSON object to *cfg (start from the defaults). Keys are rule names, whose value
// is true/false (switch), a number (threshold; also enables) or {"enabled": b,
// "threshold": x}, or one of the tuning fields above by name. Unknown keys and bad values
// fail with ANNEAL_ERR_INVALID_ARG naming the key; *cfg is unchanged on failure.
anneal_status anneal_quality_config_parse(const char *json, size_t len, const char *what,
                                          anneal_quality_config *cfg, anneal_err *err);

anneal_quality_scratch *anneal_quality_scratch_new(void);
void anneal_quality_scratch_free(anneal_quality_scratch *s);
// Evaluates one document of `len` UTF-8 bytes (invalid bytes and NULs are accepted; each
// invalid byte counts as one non-letter character). Fails only with ANNEAL_ERR_NOMEM, or
// ANNEAL_ERR_LIMIT for documents of 4 GiB or more.
anneal_status anneal_quality_check(anneal_quality_scratch *s, const anneal_quality_config *cfg,
                                   const char *text, size_t len, anneal_quality_result *out,
                                   anneal_err *err);

// ---- token shards (src/data/shard.c) ------------------------------------------------
// A shard is one file: a 128-byte header (magic "ANNSHARD", version, token size, vocab size,
// EOS id, token and document counts, SHA-256 of the tokens, CRC-32 of the header) and then
// the tokens, little-endian u16 (vocab <= 65536) or u32, each document followed by EOS.
// docs/formats.md ("Token shards") is the specification.
#define ANNEAL_SHARD_HEADER_SIZE 128
#define ANNEAL_SHARD_VERSION 1
#define ANNEAL_SHARD_DEFAULT_MAX_BYTES ((uint64_t)1 << 30) // 1 GiB per shard

// 2 when vocab_size <= 65536, else 4.
uint32_t anneal_shard_token_bytes(uint32_t vocab_size);

// An open, fully validated shard. `tokens` points into the mapping (n_tokens * token_bytes
// bytes, little-endian); read them with anneal_shard_token or anneal_shard_read.
typedef struct anneal_shard {
    anneal_map map;          // empty for anneal_shard_open_memory
    const uint8_t *tokens;   // payload
    uint64_t n_tokens;       // EOS tokens included
    uint64_t n_docs;         // = number of EOS tokens; the last token is EOS
    uint32_t vocab_size;
    int32_t eos_id;
    uint32_t token_bytes;    // 2 or 4
    uint8_t sha256[32];      // of the payload
} anneal_shard;

// Maps `path` and checks everything: magic, version, header CRC, token size against the vocab,
// EOS id, reserved bytes, token count against the file size, every token below the vocab,
// EOS count and last token, payload SHA-256. Errors (ANNEAL_ERR_FORMAT, or UNSUPPORTED for
// another version) read "PATH: at offset N: ...". Close with anneal_shard_close.
anneal_status anneal_shard_open(const char *path, anneal_shard *out, anneal_err *err);
// The same checks on a caller's buffer (borrowed: it must outlive the shard); `what` names it.
anneal_status anneal_shard_open_memory(const void *data, size_t size, const char *what,
                                       anneal_shard *out, anneal_err *err);
void anneal_shard_close(anneal_shard *s); // accepts NULL and a zeroed struct

// Token i (< n_tokens).
static inline int32_t anneal_shard_token(const anneal_shard *s, uint64_t i) {
    const uint8_t *p = s->tokens + i * s->token_bytes;
    if (s->token_bytes == 2) return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8);
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}
// Copies tokens [start, start + n) (clipped to the shard) into out; returns how many. A
// training window of T positions is anneal_shard_read(s, i, T + 1, buf) (inputs buf[0..T),
// targets buf[1..T]).
size_t anneal_shard_read(const anneal_shard *s, uint64_t start, size_t n, int32_t *out);

// Streams documents into DIR/PREFIX-00000.bin, PREFIX-00001.bin, ... through anneal_atomic_*
// (a shard appears only once complete). A new shard starts before a document that would take
// the open one past max_bytes (0: ANNEAL_SHARD_DEFAULT_MAX_BYTES); documents are never split,
// so a document longer than a shard gets a shard of its own.
typedef struct anneal_shard_writer anneal_shard_writer;
anneal_status anneal_shard_writer_new(const char *dir, const char *prefix, uint32_t vocab_size,
                                      int32_t eos_id, uint64_t max_bytes,
                                      anneal_shard_writer **out, anneal_err *err);
// Appends one document (its tokens, then EOS). Tokens must be in [0, vocab) and not EOS
// (ANNEAL_ERR_INVALID_ARG naming the token; nothing is written). After an I/O failure every
// call returns the same error.
anneal_status anneal_shard_writer_add(anneal_shard_writer *w, const int32_t *tokens, size_t n,
                                      anneal_err *err);
// Completes the open shard. Without it, free discards the open shard (earlier ones stay).
anneal_status anneal_shard_writer_finish(anneal_shard_writer *w, anneal_err *err);
// Shards completed, tokens and documents added so far (any pointer may be NULL).
void anneal_shard_writer_stats(const anneal_shard_writer *w, size_t *n_shards, uint64_t *n_tokens,
                               uint64_t *n_docs);
void anneal_shard_writer_free(anneal_shard_writer *w);

// Deterministic train/validation split: true when the document with this key (its id, or its
// text when it has none) belongs to validation. Rule: h = the first 8 bytes, read
// little-endian, of SHA-256(seed as 8 little-endian bytes || key); validation iff
// h < floor(val_fraction * 2^64). val_fraction <= 0 (or NaN): never; >= 1: always.
bool anneal_split_is_val(const char *key, size_t len, double val_fraction, uint64_t seed);

// ---- bias audit (src/data/audit.c) --------------------------------------------------
// Counts mentions of demographic groups (a lexicon of terms per group, per category) and how
// often positive and negative sentiment words occur near them; PMI(group, sentiment) with
// add-one smoothing; flags groups whose PMI strays from their category's mean. The lexicon
// format, matching rules, formulas and report: docs/data.md, "Bias audit".
typedef struct anneal_audit anneal_audit;

typedef struct anneal_audit_config {
    int window;            // 10: a sentiment word counts when within this many words of a mention
    uint64_t min_mentions; // 20: groups with fewer mentions are "insufficient", never flagged
    double threshold;      // 0.5: flag when |PMI - category mean PMI| > this (bits)
} anneal_audit_config;

anneal_audit_config anneal_audit_config_default(void);
// The compiled-in lexicon (JSON text, NUL-terminated), for `anneal data audit` to print.
const char *anneal_audit_default_lexicon(void);

// Builds an auditor from a lexicon (NULL: the default). Errors: invalid JSON
// (ANNEAL_ERR_FORMAT, with line and column), a bad lexicon (ANNEAL_ERR_INVALID_ARG naming the
// key, e.g. "lex.json: key 'categories.gender.female[2]': ..."), a bad config. `what` names
// the lexicon in messages. cfg NULL: defaults. Free with anneal_audit_free.
anneal_status anneal_audit_new(const char *lexicon_json, size_t len, const char *what,
                               const anneal_audit_config *cfg, anneal_audit **out,
                               anneal_err *err);
// Adds one document (bytes; invalid UTF-8 is fine). Fails only with ANNEAL_ERR_NOMEM.
anneal_status anneal_audit_add(anneal_audit *a, const char *text, size_t len, anneal_err *err);

typedef enum anneal_audit_status {
    ANNEAL_AUDIT_OK = 0,       // judged, not flagged
    ANNEAL_AUDIT_FLAGGED,      // PMI with positive or negative differs from the category mean
    ANNEAL_AUDIT_INSUFFICIENT, // fewer than min_mentions mentions: not judged
} anneal_audit_status;

typedef struct anneal_audit_group {
    const char *category, *name; // owned by the auditor
    uint64_t mentions;           // term occurrences
    uint64_t documents;          // documents with at least one mention
    uint64_t positive, negative; // mentions with a positive / negative word in the window
    double pmi_positive, pmi_negative;   // bits, smoothed
    double mean_positive, mean_negative; // the category's mean over judged groups (NAN if none)
    anneal_audit_status status;
    bool flag_positive, flag_negative;
} anneal_audit_group;

// Number of groups (all categories, lexicon order) and group i's figures so far.
size_t anneal_audit_group_count(const anneal_audit *a);
void anneal_audit_group_get(const anneal_audit *a, size_t i, anneal_audit_group *out);
// Documents and words seen, mentions (all groups), positive and negative words seen.
void anneal_audit_totals(const anneal_audit *a, uint64_t *docs, uint64_t *words,
                         uint64_t *mentions, uint64_t *positive_words, uint64_t *negative_words);
// The report as JSON (stable key order, one trailing newline) or markdown tables, in a
// NUL-terminated buffer the caller frees with anneal_free.
anneal_status anneal_audit_report_json(const anneal_audit *a, char **out, size_t *len,
                                       anneal_err *err);
anneal_status anneal_audit_report_markdown(const anneal_audit *a, char **out, size_t *len,
                                           anneal_err *err);
void anneal_audit_free(anneal_audit *a);

// ---- dedup (src/data/dedup.c) ---------------------------------------------------------
// Exact and near-duplicate detection over a stream of documents, in two passes: add every
// document (its index is the call order), finish, then ask for each index's verdict. Exact:
// a 128-bit hash of the normalized text (NFKC + case fold, whitespace runs collapsed to one
// space, trimmed). Near: MinHash over word n-gram shingles with LSH banding; documents that
// share a band bucket (optionally checked by estimated Jaccard) are joined, clusters are the
// connected components, and each cluster keeps its first document. Per document only a few
// bytes stay in memory; bucket records spill to temporary files past memory_budget and are
// merged by an external sort. Details, defaults and limits: docs/data.md, "Dedup".

typedef struct anneal_dedup_config {
    bool exact;               // true: drop exact duplicates (of the normalized text)
    bool near;                // true: drop near duplicates (MinHash + LSH)
    int bands;                // 14: LSH bands
    int rows;                 // 8: signature rows per band; bands * rows permutations (1..1024)
    int ngram;                // 5: words per shingle (1..32)
    uint64_t seed;            // 1: permutation seed; same seed, same result
    double jaccard_threshold; // 0 = off; else a band match joins two documents only when
                              // their signatures agree in at least this fraction of rows
    uint64_t memory_budget;   // 512 MiB: bytes of bucket records held before spilling
} anneal_dedup_config;

typedef enum anneal_dedup_reason {
    ANNEAL_DEDUP_KEEP = 0,  // the first document of its cluster, or alone
    ANNEAL_DEDUP_EXACT = 1, // its normalized text equals that of an earlier document
    ANNEAL_DEDUP_NEAR = 2,  // in a near-duplicate cluster, not an exact duplicate
} anneal_dedup_reason;

typedef struct anneal_dedup_verdict {
    bool keep;
    anneal_dedup_reason reason;
    uint64_t representative; // the kept document of its cluster (its own index when kept)
    int64_t cluster;         // cluster id (0.., in order of representative), -1 when alone
} anneal_dedup_verdict;

typedef struct anneal_dedup_cluster {
    uint64_t representative; // its first document
    uint64_t size;           // documents in it, >= 2
    const uint32_t *members; // [size] document indexes, ascending (members[0] = representative);
                             // owned by the dedup handle, valid until anneal_dedup_free
} anneal_dedup_cluster;

typedef struct anneal_dedup_counts {
    uint64_t docs, kept, exact, near; // exact + near = removed
    uint64_t clusters;                // clusters of two or more documents
    uint64_t band_matches;            // records sharing a bucket with an earlier document
    uint64_t rejected;                // band matches refused by jaccard_threshold
    uint64_t spill_runs;              // sorted runs written to the spill directory
    uint64_t spill_bytes;             // bytes written there (runs and signatures)
} anneal_dedup_counts;

typedef struct anneal_dedup anneal_dedup;

// exact and near on, 14 bands x 8 rows, 5-word shingles, seed 1, no Jaccard check, 512 MiB.
anneal_dedup_config anneal_dedup_config_default(void);
// ANNEAL_ERR_INVALID_ARG naming the offending field ("bands", "memory_budget", ...).
anneal_status anneal_dedup_config_check(const anneal_dedup_config *cfg, anneal_err *err);
// Applies a JSON object to *cfg (start from the defaults). Keys are the field names above;
// unknown keys and bad values fail with ANNEAL_ERR_INVALID_ARG naming the key (`what` names
// the source, NULL: "dedup config"); *cfg is unchanged on failure.
anneal_status anneal_dedup_config_parse(const char *json, size_t len, const char *what,
                                        anneal_dedup_config *cfg, anneal_err *err);
// "keep", "exact", "near"; "?" out of range.
const char *anneal_dedup_reason_name(anneal_dedup_reason r);

// A new deduplicator; temporary files go to spill_dir (NULL: $TMPDIR, else /tmp). They are
// unlinked as soon as they are created, so none outlives the process, whatever happens.
// Free with anneal_dedup_free.
anneal_status anneal_dedup_new(const anneal_dedup_config *cfg, const char *spill_dir,
                               anneal_dedup **out, anneal_err *err);
// Adds one document (UTF-8; invalid bytes count as U+FFFD) as index = number added so far.
// At most 2^32 - 1 documents. After a failure the handle refuses further work.
anneal_status anneal_dedup_add(anneal_dedup *d, const char *text, size_t len, anneal_err *err);
// Adds n documents in order, hashing them on the pool's threads (pool NULL: this thread).
// Same result as n calls of anneal_dedup_add. Only one call on a handle at a time.
anneal_status anneal_dedup_add_batch(anneal_dedup *d, anneal_pool *pool, const char *const *texts,
                                     const size_t *lens, size_t n, anneal_err *err);
// Merges the buckets and decides every document. Call once, after the last add.
anneal_status anneal_dedup_finish(anneal_dedup *d, anneal_err *err);
// After finish: ANNEAL_ERR_INVALID_ARG before it, ANNEAL_ERR_RANGE past the last index.
anneal_status anneal_dedup_verdict_get(const anneal_dedup *d, uint64_t index,
                                       anneal_dedup_verdict *out);
void anneal_dedup_counts_get(const anneal_dedup *d, anneal_dedup_counts *out);
// Cluster `id` (0 .. counts.clusters - 1) after finish; ANNEAL_ERR_RANGE otherwise.
anneal_status anneal_dedup_cluster_get(const anneal_dedup *d, uint64_t id,
                                       anneal_dedup_cluster *out);
void anneal_dedup_free(anneal_dedup *d);

// The MinHash signature of one document as the deduplicator computes it: bands * rows values
// into sig. For tools and tests; allocates its working memory per call.
anneal_status anneal_dedup_signature(const anneal_dedup_config *cfg, const char *text, size_t len,
                                     uint32_t *sig, anneal_err *err);

// ---- documents and readers (src/data/reader.c, src/data/html.c) ---------------------
// Streams documents out of files, directories and dataset directories with bounded memory.
// Formats (by extension, each optionally + .gz or .zst), defaults and the skip reasons:
// docs/data.md, "Ingest".

typedef struct anneal_doc {
    const char *id;     size_t id_len;   // stable id (jsonl id field, else "<path>:<line>")
    const char *text;   size_t len;      // valid UTF-8, no NUL
    const char *source;                  // "path:line" where the record starts (1-based)
    const char *meta;   size_t meta_len; // a JSON object ("{}" when none)
} anneal_doc;

// How a plain-text file becomes documents.
typedef enum anneal_txt_unit {
    ANNEAL_TXT_FILE,      // the whole file is one document
    ANNEAL_TXT_PARAGRAPH, // blocks of lines separated by blank (whitespace-only) lines
    ANNEAL_TXT_LINE,      // every non-blank line
} anneal_txt_unit;

// Why a record (or a whole file, line 0) was skipped. Values never renumbered.
typedef enum anneal_skip_reason {
    ANNEAL_SKIP_INVALID_UTF8, // "invalid_utf8": the message gives the byte offset
    ANNEAL_SKIP_NUL,          // "nul": a NUL byte (or \u0000 in JSON)
    ANNEAL_SKIP_BAD_JSON,     // "bad_json": not JSON, not an object, bad id/meta field
    ANNEAL_SKIP_NO_TEXT,      // "no_text": text field or CSV column missing or not a string
    ANNEAL_SKIP_TOO_LARGE,    // "too_large": record over max_doc_bytes
    ANNEAL_SKIP_BINARY,       // "binary": unknown extension and the first 8 KiB look binary
    ANNEAL_SKIP_UNREADABLE,   // "unreadable": open/read failed (errno text in the message)
    ANNEAL_SKIP_CORRUPT,      // "corrupt": truncated or corrupt gzip/zstd, broken CSV quoting
    ANNEAL_SKIP_COUNT
} anneal_skip_reason;

// "invalid_utf8", "nul", ... as above; "?" out of range.
const char *anneal_skip_reason_name(anneal_skip_reason reason);

// Called once per skipped record, during the first pass only (a rewound pass reads the same
// bytes). `line` is 1-based where the record starts, 0 when the whole file is skipped;
// `message` is a short human reason ("invalid UTF-8 at byte 1234"). Strings are valid
// only during the call.
typedef void (*anneal_skip_fn)(void *user, const char *path, uint64_t line,
                               anneal_skip_reason reason, const char *message);

typedef struct anneal_reader_config {
    const char *jsonl_text_field; // "text"
    const char *jsonl_id_field;   // "id" (also the id column of a CSV with a header)
    const char *csv_column;       // "text": a header name, or a 1-based column number ("2")
    bool csv_header;              // true: the first row names the columns (always true when
                                  // csv_column is a name); false: every row is data
    anneal_txt_unit txt_unit;     // ANNEAL_TXT_FILE
    size_t max_doc_bytes;         // 32 MiB: larger records are skipped (too_large)
    anneal_skip_fn on_skip;       // may be NULL
    void *skip_user;
} anneal_reader_config;

anneal_reader_config anneal_reader_config_default(void);

// One file the reader reads (directories are expanded into their files at open).
typedef struct anneal_reader_input {
    const char *path;          // as given, or joined under the directory given
    uint64_t size;             // raw bytes (stat at open; bytes read once hashed)
    uint8_t sha256[32];        // of the raw (compressed) bytes, once sha256_done
    bool sha256_done;          // true after one pass read the whole file
    const char *dataset;       // the dataset directory this file belongs to, else NULL
    char dataset_version[65];  // hex SHA-256 of its manifest.json, "" when none
} anneal_reader_input;

typedef struct anneal_reader_stats {
    uint64_t docs;                         // documents returned in this pass
    uint64_t skipped[ANNEAL_SKIP_COUNT];   // records (or files) skipped in this pass
    uint64_t skipped_total;
    uint64_t bytes;                        // decompressed bytes read in this pass
} anneal_reader_stats;

typedef struct anneal_reader anneal_reader;

// Expands the inputs (files, directories read recursively in byte order skipping hidden
// entries, dataset directories: their docs/*.jsonl), stats every file and returns a
// reader (free with anneal_reader_free). cfg NULL means the defaults; the config's
// strings must outlive the reader. A path that does not exist is ANNEAL_ERR_NOT_FOUND
// naming it, one that cannot be stat'ed ANNEAL_ERR_IO; no inputs or a bad csv_column or
// txt_unit is ANNEAL_ERR_INVALID_ARG. Problems found inside directories (dangling links,
// unreadable subdirectories) are reported through on_skip, not failures.
anneal_status anneal_reader_open(const char *const *inputs, size_t n,
                                 const anneal_reader_config *cfg, anneal_reader **out,
                                 anneal_err *err);
// The next document into *doc (pointers valid until the next call, rewind or free), or
// *eof = true at the end. Bad records are skipped and reported, never returned as errors;
// fails only on ANNEAL_ERR_NOMEM (or a broken invariant).
anneal_status anneal_reader_next(anneal_reader *r, anneal_doc *doc, bool *eof, anneal_err *err);
// Starts another pass over the same files (stats restart; hashes already complete stay).
anneal_status anneal_reader_rewind(anneal_reader *r, anneal_err *err);
void anneal_reader_free(anneal_reader *r);
const anneal_reader_stats *anneal_reader_stats_get(const anneal_reader *r);
size_t anneal_reader_input_count(const anneal_reader *r);
const anneal_reader_input *anneal_reader_input_get(const anneal_reader *r, size_t i);

// ---- clean (src/data/clean.c) --------------------------------------------------------
// Text normalization for one document; every switch on by default. The stages, in order:
// invalid UTF-8 -> U+FFFD (always), control characters, NFKC, HTML remnants, whitespace,
// boilerplate lines. docs/data.md, "Clean", lists the exact rules and default patterns.
// clean(clean(x)) == clean(x).

#define ANNEAL_CLEAN_MAX_PATTERNS 64
#define ANNEAL_CLEAN_PATTERN_MAX 64 // bytes per pattern, NUL included

typedef struct anneal_clean_config {
    bool nfkc;        // Unicode NFKC (utf8proc); ASCII runs are already NFKC
    bool control;     // remove Cc characters except \n, \t (and \r, which whitespace handles)
    bool whitespace;  // CRLF/CR -> LF, runs of spaces/tabs -> one space, trim line ends,
                      // at most 2 consecutive newlines, trim the document
    bool html;        // remove leftover tags of known HTML elements and comments; decode
                      // entities (&amp; &#39; &#x27; ...)
    bool boilerplate; // drop lines containing one of the patterns (ASCII case ignored)
    size_t boilerplate_max_line; // 300: longer lines are never dropped (0: no limit)
    size_t n_patterns;
    char patterns[ANNEAL_CLEAN_MAX_PATTERNS][ANNEAL_CLEAN_PATTERN_MAX];
} anneal_clean_config;

typedef struct anneal_clean_stats {
    uint64_t invalid_utf8;      // invalid bytes replaced by U+FFFD
    uint64_t control_removed;   // control characters removed
    uint64_t chars_normalized;  // non-ASCII code points that NFKC rewrote
    uint64_t html_removed;      // tags, comments and entities removed or decoded
    uint64_t whitespace_fixed;  // whitespace bytes removed or replaced
    uint64_t boilerplate_lines; // lines dropped as boilerplate
} anneal_clean_stats;

// Reusable per-thread working memory; not shareable between threads.
typedef struct anneal_clean_scratch anneal_clean_scratch;

// Every stage on, the default boilerplate patterns, boilerplate_max_line 300.
anneal_clean_config anneal_clean_config_default(void);
// Applies a JSON object to *cfg: "nfkc", "control", "whitespace", "html", "boilerplate"
// (true/false), "boilerplate_patterns" (array of strings: replaces the list and enables),
// "boilerplate_extra" (array: appended), "boilerplate_max_line" (integer 0..10^9).
// Unknown keys and bad values fail with ANNEAL_ERR_INVALID_ARG naming the key, invalid
// JSON with ANNEAL_ERR_FORMAT; *cfg is unchanged on failure.
anneal_status anneal_clean_config_parse(const char *json, size_t len, const char *what,
                                        anneal_clean_config *cfg, anneal_err *err);
anneal_clean_scratch *anneal_clean_scratch_new(void);
void anneal_clean_scratch_free(anneal_clean_scratch *s);
// Cleans `len` bytes (any bytes; NUL is a control character). *out points into the
// scratch or at `text` itself when nothing changed; valid until the next call with this
// scratch (and while `text` lives). stats (may be NULL) gets the counts added to it.
// Fails only with ANNEAL_ERR_NOMEM, or ANNEAL_ERR_LIMIT for texts of 1 GiB or more.
anneal_status anneal_clean_text(anneal_clean_scratch *s, const anneal_clean_config *cfg,
                                const char *text, size_t len, const char **out,
                                size_t *out_len, anneal_clean_stats *stats, anneal_err *err);

// ---- dataset directories and manifests (src/data/dataset.c) -------------------------
// A step writes its output into OUTDIR.tmp-<pid>-<random> beside OUTDIR and renames it into
// place at commit, after writing manifest.json; an interrupted run never leaves a complete-
// looking OUTDIR. The version of a dataset is the SHA-256 of its manifest.json bytes; the
// same inputs and configuration give byte-identical directories. docs/data.md ("Versioning
// and manifests") specifies the layout and the manifest.
#define ANNEAL_DATASET_FORMAT_VERSION 1
#define ANNEAL_DATASET_DOCS_MAX_BYTES ((uint64_t)128 << 20) // a docs/NNNNN.jsonl file rolls here
#define ANNEAL_DATASET_REPLACE 1u // create/commit flag: replace an existing dataset OUTDIR

typedef struct anneal_dataset_writer anneal_dataset_writer;
typedef struct anneal_dataset_file anneal_dataset_file;

// One input file as recorded in the manifest.
typedef struct anneal_manifest_input {
    const char *path;   // as given (relative paths stay relative)
    uint64_t bytes;     // with hashed: its size
    uint8_t sha256[32]; // with hashed: its SHA-256 (anneal_reader_input has both)
    bool hashed;        // false: commit stats and hashes the file itself
} anneal_manifest_input;

typedef struct anneal_manifest_info {
    const anneal_manifest_input *inputs; // in the order read
    size_t n_inputs;
    const char *parent; // the parent dataset's version (64 hex), or NULL
    const char *config_json; // JSON object text: the exact effective configuration (NULL: {})
    const char *counts_json; // JSON object text: what the step counted (NULL: {})
} anneal_manifest_info;

// Starts a dataset at outdir (its parent directory must exist). step is 1-64 characters of
// [a-z0-9_-]. An existing outdir is refused (ANNEAL_ERR_INVALID_ARG naming it) unless flags
// has ANNEAL_DATASET_REPLACE; even then only a dataset directory (with manifest.json) is
// replaced, at commit, and removed only after the new one is in place. Free with
// anneal_dataset_writer_free.
anneal_status anneal_dataset_create(const char *outdir, const char *step, unsigned flags,
                                    anneal_dataset_writer **out, anneal_err *err);
// Size at which docs/NNNNN.jsonl rolls to the next file (0: the 128 MiB default). A file
// never splits a line, and a line longer than the limit gets a file of its own.
void anneal_dataset_set_docs_max_bytes(anneal_dataset_writer *w, uint64_t max_bytes);
// Appends {"id","text","source","meta"} (in that order, one line) to docs/NNNNN.jsonl. meta is
// copied as is ("{}" when NULL or empty); line breaks in it become spaces.
anneal_status anneal_dataset_write_doc(anneal_dataset_writer *w, const anneal_doc *doc,
                                       anneal_err *err);
// Appends {"id","source","reason","detail"} to removed.jsonl; detail_json is a JSON value
// written as is (NULL: null). doc->text is not written.
anneal_status anneal_dataset_write_removed(anneal_dataset_writer *w, const anneal_doc *doc,
                                           const char *reason, const char *detail_json,
                                           anneal_err *err);
// Documents and removed documents written so far.
void anneal_dataset_stats(const anneal_dataset_writer *w, uint64_t *docs, uint64_t *removed);
// Another output file (report.json, report.md, ...): relpath is relative, without '.' or '..'
// parts, and not manifest.json, removed.jsonl or under docs/; parent directories are made.
// Close every file before commit.
anneal_status anneal_dataset_open_file(anneal_dataset_writer *w, const char *relpath,
                                       anneal_dataset_file **out, anneal_err *err);
anneal_status anneal_dataset_file_write(anneal_dataset_file *f, const void *data, size_t n,
                                        anneal_err *err);
// Flushes, closes and frees f (NULL is fine).
anneal_status anneal_dataset_file_close(anneal_dataset_file *f, anneal_err *err);
// open_file + file_write + file_close in one call.
anneal_status anneal_dataset_write_file(anneal_dataset_writer *w, const char *relpath,
                                        const void *data, size_t n, anneal_err *err);
// Makes the directory relpath ("shards") in the dataset and writes its current (temporary)
// path into path[cap] (ANNEAL_ERR_RANGE when it does not fit), for writers with their own
// files (anneal_shard_writer_new). Everything under it is listed in the manifest at commit.
anneal_status anneal_dataset_mkdir(anneal_dataset_writer *w, const char *relpath, char *path,
                                   size_t cap, anneal_err *err);
// The temporary directory being written (valid until commit, abort or free).
const char *anneal_dataset_tmpdir(const anneal_dataset_writer *w);
// Finishes: flushes and fsyncs every file, hashes every file in the directory into
// manifest.json (outputs sorted by path; inputs hashed when not already), renames the
// directory to outdir and fsyncs its parent. version_hex (may be NULL) gets the version. On
// any failure the temporary directory is removed and outdir is untouched. After any write
// error, commit returns that error (and cleans up).
anneal_status anneal_dataset_commit(anneal_dataset_writer *w, const anneal_manifest_info *info,
                                    char version_hex[65], anneal_err *err);
// Removes the temporary directory (no-op after commit). Free after abort is fine.
void anneal_dataset_abort(anneal_dataset_writer *w);
// Aborts when not committed, then frees. Accepts NULL.
void anneal_dataset_writer_free(anneal_dataset_writer *w);

// The version (SHA-256 of manifest.json, 64 hex digits) of the dataset at dir;
// ANNEAL_ERR_NOT_FOUND when it has no manifest.json.
anneal_status anneal_dataset_version(const char *dir, char hex[65], anneal_err *err);

typedef enum anneal_dataset_problem_kind {
    ANNEAL_DSP_MISSING,       // "missing": an output in the manifest is not there
    ANNEAL_DSP_EXTRA,         // "extra": a file the manifest does not list
    ANNEAL_DSP_CHANGED,       // "changed": size or SHA-256 differs (or not a regular file)
    ANNEAL_DSP_INPUT_MISSING, // "input_missing": an input no longer exists (not a failure)
    ANNEAL_DSP_INPUT_CHANGED, // "input_changed": an input exists with other bytes
} anneal_dataset_problem_kind;
const char *anneal_dataset_problem_name(anneal_dataset_problem_kind kind);

typedef struct anneal_dataset_problem {
    anneal_dataset_problem_kind kind;
    char *path;   // relative to the dataset (outputs) or as recorded (inputs)
    char *detail; // human text: "size is 10 bytes, the manifest says 11"
} anneal_dataset_problem;

typedef struct anneal_dataset_report {
    char version[65];
    char *step;
    size_t n_outputs, n_inputs;
    anneal_dataset_problem *problems; // outputs in manifest order, extras, then inputs
    size_t n_problems;
    bool ok; // no problem other than missing inputs
} anneal_dataset_report;

// Checks the dataset at dir: parses manifest.json strictly (ANNEAL_ERR_FORMAT naming the key,
// e.g. "d/manifest.json: key 'outputs[2].sha256': ..."; ANNEAL_ERR_NOT_FOUND without one),
// re-hashes every output, lists files the manifest does not, re-checks the inputs that still
// exist. Problems found are in *r (ANNEAL_OK); free it with anneal_dataset_report_free.
anneal_status anneal_dataset_verify(const char *dir, anneal_dataset_report *r, anneal_err *err);
void anneal_dataset_report_free(anneal_dataset_report *r);

// ---- steps and pipelines (src/data/pipeline.c) --------------------------------------
// One step of `anneal data`: reads documents from inputs (files, directories, dataset
// directories), writes a new dataset directory with manifest.json, report.json and
// report.md. The config (a JSON object) holds "reader" (text_field, id_field, column,
// header, unit, max_doc_bytes) plus the step's own keys: clean: "clean", "quality"; pii:
// "pii"; dedup: "dedup"; audit: "audit", "lexicon"; shard: "tokenizer", "val_fraction",
// "seed", "shard_bytes". docs/data.md describes each.
typedef enum anneal_data_step {
    ANNEAL_STEP_INGEST,
    ANNEAL_STEP_CLEAN,
    ANNEAL_STEP_PII,
    ANNEAL_STEP_DEDUP,
    ANNEAL_STEP_AUDIT,
    ANNEAL_STEP_SHARD,
    ANNEAL_STEP_COUNT
} anneal_data_step;

const char *anneal_data_step_name(anneal_data_step s); // "ingest" ...; "?" out of range
anneal_status anneal_data_step_parse(const char *name, anneal_data_step *out, anneal_err *err);

// Progress: documents and decompressed bytes read so far, the raw size of the inputs, and
// done = true once at the end of the step.
typedef void (*anneal_data_progress_fn)(void *user, const char *step, uint64_t docs,
                                        uint64_t bytes, uint64_t total_bytes, bool done);

typedef struct anneal_data_step_options {
    anneal_data_step step;
    const char *config_json;  // NULL: defaults
    const char *config_what;  // names the config in messages ("clean.json")
    const char *const *inputs;
    size_t n_inputs;
    const char *outdir;
    bool replace;             // replace an existing OUTDIR (only once the new one is complete)
    int threads;              // 0: anneal_thread_count()
    const char *spill_dir;    // dedup's temporary files (NULL: $TMPDIR)
    anneal_skip_fn on_skip;   // each skipped input record, besides the report
    anneal_data_progress_fn progress;
    void *user;               // for on_skip and progress
} anneal_data_step_options;

typedef struct anneal_data_step_result {
    char version[65]; // the new dataset's version (hex SHA-256 of its manifest.json)
    uint64_t docs_in, docs_out, removed, skipped;
} anneal_data_step_result;

// Runs one step. On failure nothing exists at OUTDIR (or the old one is untouched).
anneal_status anneal_data_step_run(const anneal_data_step_options *o,
                                   anneal_data_step_result *res, anneal_err *err);

// A pipeline file (JSON): {"inputs": [paths], "output": dir, "steps": [{"step": "clean",
// ...that step's config keys...}, ...]}; relative paths are relative to the file's
// directory (`what` is its path). When `what` ends in ".toml" the text is read as TOML
// (anneal_toml_parse) into the same structure ([[steps]] tables); otherwise as JSON.
// The output is a dataset directory (step "pipeline")
// holding one dataset per step, NN-step/, each reading the documents of the last step
// before it that wrote documents (audit and shard write none). Every step is checked before
// any runs; on failure nothing exists at the output.
typedef struct anneal_data_pipeline_step {
    char *dir; // OUTPUT/NN-step
    anneal_data_step_result result;
} anneal_data_pipeline_step;

typedef struct anneal_data_pipeline_result {
    char *output;
    char version[65]; // the pipeline directory's version
    anneal_data_pipeline_step *steps;
    size_t n_steps;
} anneal_data_pipeline_result;

// on_skip gets the first step's skipped records (the later steps read clean datasets).
anneal_status anneal_data_pipeline_run(const char *json, size_t len, const char *what,
                                       bool replace, anneal_data_progress_fn progress,
                                       anneal_skip_fn on_skip, void *user,
                                       anneal_data_pipeline_result *res, anneal_err *err);
void anneal_data_pipeline_result_free(anneal_data_pipeline_result *r);

#ifdef __cplusplus
}
#endif
#endif
