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

#ifdef __cplusplus
}
#endif
#endif
