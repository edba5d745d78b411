// The steps of `anneal data` (ingest, clean, pii, dedup, audit, shard) and the pipelines that
// chain them: each step streams documents from its inputs into a new dataset directory with
// its manifest and report (docs/data.md).
#include "anneal/data.h"
#include "anneal/gguf.h"
#include "anneal/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXAMPLES_PER_REASON 5
#define SNIPPET_BYTES 160
#define PROGRESS_EVERY 4096 // documents between progress calls
#define TOP_CLUSTERS 20     // clusters listed in the dedup report

static const char *STEP_NAMES[ANNEAL_STEP_COUNT] = {"ingest", "clean", "pii",
                                                    "dedup",  "audit", "shard"};

const char *anneal_data_step_name(anneal_data_step s) {
    return (unsigned)s < ANNEAL_STEP_COUNT ? STEP_NAMES[s] : "?";
}

anneal_status anneal_data_step_parse(const char *name, anneal_data_step *out, anneal_err *err) {
    for (int s = 0; s < ANNEAL_STEP_COUNT; s++) {
        if (strcmp(name, STEP_NAMES[s]) == 0) {
            *out = (anneal_data_step)s;
            return ANNEAL_OK;
        }
    }
    return anneal_err_set(err, ANNEAL_ERR_NOT_FOUND,
                          "unknown step '%s' (ingest, clean, pii, dedup, audit, shard)", name);
}

// ---- configuration ----------------------------------------------------------------------

// Which keys of a step's config object belong to which part.
static bool key_allowed(anneal_data_step step, const char *key) {
    if (strcmp(key, "reader") == 0) return true;
    switch (step) {
    case ANNEAL_STEP_INGEST: return false;
    case ANNEAL_STEP_CLEAN: return strcmp(key, "clean") == 0 || strcmp(key, "quality") == 0;
    case ANNEAL_STEP_PII: return strcmp(key, "pii") == 0;
    case ANNEAL_STEP_DEDUP: return strcmp(key, "dedup") == 0;
    case ANNEAL_STEP_AUDIT: return strcmp(key, "audit") == 0 || strcmp(key, "lexicon") == 0;
    case ANNEAL_STEP_SHARD:
        return strcmp(key, "tokenizer") == 0 || strcmp(key, "val_fraction") == 0 ||
               strcmp(key, "seed") == 0 || strcmp(key, "shard_bytes") == 0;
    default: return false;
    }
}

static anneal_status sub_json(json_t *cfg, const char *key, char **text, anneal_err *err) {
    *text = NULL;
    json_t *v = json_object_get(cfg, key);
    if (!v) return ANNEAL_OK;
    *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!*text) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    return ANNEAL_OK;
}

static anneal_status bad_key(anneal_err *err, const char *what, const char *key, const char *want) {
    return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: key '%s': expected %s", what, key,
                          want);
}

// The reader's options from cfg.reader; strings point into cfg, which outlives the reader.
static anneal_status reader_config(json_t *cfg, const char *what, anneal_reader_config *rc,
                                   anneal_err *err) {
    *rc = anneal_reader_config_default();
    json_t *r = json_object_get(cfg, "reader");
    if (!r) return ANNEAL_OK;
    if (!json_is_object(r)) return bad_key(err, what, "reader", "an object");
    const char *key;
    json_t *v;
    json_object_foreach(r, key, v) {
        if (strcmp(key, "text_field") == 0 || strcmp(key, "id_field") == 0 ||
            strcmp(key, "column") == 0) {
            if (!json_is_string(v) || json_string_length(v) == 0)
                return bad_key(err, what, key, "a non-empty string");
            if (key[0] == 't') rc->jsonl_text_field = json_string_value(v);
            else if (key[0] == 'i') rc->jsonl_id_field = json_string_value(v);
            else rc->csv_column = json_string_value(v);
        } else if (strcmp(key, "header") == 0) {
            if (!json_is_boolean(v)) return bad_key(err, what, key, "true or false");
            rc->csv_header = json_is_true(v);
        } else if (strcmp(key, "unit") == 0) {
            const char *u = json_is_string(v) ? json_string_value(v) : "";
            if (strcmp(u, "file") == 0) rc->txt_unit = ANNEAL_TXT_FILE;
            else if (strcmp(u, "paragraph") == 0) rc->txt_unit = ANNEAL_TXT_PARAGRAPH;
            else if (strcmp(u, "line") == 0) rc->txt_unit = ANNEAL_TXT_LINE;
            else return bad_key(err, what, key, "\"file\", \"paragraph\" or \"line\"");
        } else if (strcmp(key, "max_doc_bytes") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                json_integer_value(v) > ((json_int_t)1 << 32))
                return bad_key(err, what, key, "an integer from 1 to 4294967296");
            rc->max_doc_bytes = (size_t)json_integer_value(v);
        } else {
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: unknown key 'reader.%s'",
                                  what, key);
        }
    }
    return ANNEAL_OK;
}

// ---- the running step --------------------------------------------------------------------

typedef struct step_run {
    const anneal_data_step_options *o;
    const char *what; // names the config in messages
    json_t *cfg;      // the step's config object (owned)
    anneal_reader *reader;
    anneal_dataset_writer *writer;
    json_t *reasons; // reason -> {"count": n, "examples": [...]} (removed or skipped)
    json_t *skipped; // skip reason -> {"count", "examples"}
    json_t *counts;  // step-specific counts for the manifest and report
    uint64_t docs_in, docs_out, removed;
    anneal_status skip_status; // first failure inside the skip callback (out of memory)
} step_run;

// A short, valid-UTF-8 prefix of a text for report examples.
static json_t *snippet(const char *text, size_t len) {
    size_t n = len < SNIPPET_BYTES ? len : SNIPPET_BYTES;
    while (n > 0 && n < len && ((uint8_t)text[n] & 0xC0) == 0x80)
        n--;
    return json_stringn_nocheck(text, n);
}

static anneal_status note_reason(step_run *s, json_t *table, const char *reason, json_t *example,
                                 anneal_err *err) {
    json_t *e = json_object_get(table, reason);
    if (!e) {
        e = json_pack("{s:I,s:[]}", "count", (json_int_t)0, "examples");
        if (!e || json_object_set_new(table, reason, e)) {
            json_decref(example);
            return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
        }
    }
    json_t *c = json_object_get(e, "count");
    json_integer_set(c, json_integer_value(c) + 1);
    json_t *ex = json_object_get(e, "examples");
    if (json_array_size(ex) < EXAMPLES_PER_REASON && example) {
        if (json_array_append_new(ex, example))
            return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    } else {
        json_decref(example);
    }
    return ANNEAL_OK;
}

static void on_skip(void *user, const char *path, uint64_t line, anneal_skip_reason reason,
                    const char *message) {
    step_run *s = user;
    char src[4096];
    snprintf(src, sizeof src, "%s:%llu", path, (unsigned long long)line);
    json_t *ex = json_pack("{s:s,s:s}", "source", src, "message", message);
    anneal_err err = {0};
    if (!s->skip_status)
        s->skip_status = note_reason(s, s->skipped, anneal_skip_reason_name(reason), ex, &err);
    else
        json_decref(ex);
    if (s->o->on_skip) s->o->on_skip(s->o->user, path, line, reason, message);
}

static void progress(step_run *s, bool done) {
    if (!s->o->progress) return;
    if (!done && s->docs_in % PROGRESS_EVERY != 0) return;
    const anneal_reader_stats *st = s->reader ? anneal_reader_stats_get(s->reader) : NULL;
    uint64_t total = 0;
    for (size_t i = 0; s->reader && i < anneal_reader_input_count(s->reader); i++)
        total += anneal_reader_input_get(s->reader, i)->size;
    s->o->progress(s->o->user, anneal_data_step_name(s->o->step), s->docs_in,
                   st ? st->bytes : 0, total, done);
}

static anneal_status next_doc(step_run *s, anneal_doc *d, bool *eof, anneal_err *err) {
    anneal_status st = anneal_reader_next(s->reader, d, eof, err);
    if (st) return st;
    if (s->skip_status) return anneal_err_set(err, s->skip_status, "out of memory");
    if (!*eof) {
        s->docs_in++;
        progress(s, false);
    }
    return ANNEAL_OK;
}

static anneal_status remove_doc(step_run *s, const anneal_doc *d, const char *reason,
                                json_t *detail, anneal_err *err) {
    s->removed++;
    json_t *ex = json_pack("{s:s%,s:s,s:o}", "id", d->id, d->id_len, "source", d->source, "text",
                           snippet(d->text, d->len));
    if (ex && detail) json_object_update(ex, detail);
    anneal_status st = note_reason(s, s->reasons, reason, ex, err);
    if (!st) {
        char *dj = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
        st = anneal_dataset_write_removed(s->writer, d, reason, dj, err);
        free(dj);
    }
    json_decref(detail);
    return st;
}

static anneal_status keep_doc(step_run *s, const anneal_doc *d, anneal_err *err) {
    s->docs_out++;
    return anneal_dataset_write_doc(s->writer, d, err);
}

// ---- the steps ---------------------------------------------------------------------------

static anneal_status run_ingest(step_run *s, anneal_err *err) {
    anneal_doc d;
    bool eof = false;
    anneal_status st;
    while (!(st = next_doc(s, &d, &eof, err)) && !eof)
        if ((st = keep_doc(s, &d, err))) break;
    return st;
}

static anneal_status run_clean(step_run *s, anneal_err *err) {
    anneal_clean_config cc = anneal_clean_config_default();
    anneal_quality_config qc = anneal_quality_config_default();
    char *cj = NULL, *qj = NULL;
    anneal_status st = sub_json(s->cfg, "clean", &cj, err);
    if (!st) st = sub_json(s->cfg, "quality", &qj, err);
    if (!st && cj) st = anneal_clean_config_parse(cj, strlen(cj), "clean config", &cc, err);
    if (!st && qj) st = anneal_quality_config_parse(qj, strlen(qj), "quality config", &qc, err);
    free(cj);
    free(qj);
    if (st) return st;
    anneal_clean_scratch *cs = anneal_clean_scratch_new();
    anneal_quality_scratch *qs = anneal_quality_scratch_new();
    if (!cs || !qs) st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    anneal_clean_stats cst = {0};
    anneal_doc d;
    bool eof = false;
    while (!st && !(st = next_doc(s, &d, &eof, err)) && !eof) {
        const char *text;
        size_t len;
        if ((st = anneal_clean_text(cs, &cc, d.text, d.len, &text, &len, &cst, err))) break;
        anneal_doc out = d;
        out.text = text;
        out.len = len;
        if (len == 0) {
            st = remove_doc(s, &d, "empty_after_clean", NULL, err);
            continue;
        }
        anneal_quality_result q;
        if ((st = anneal_quality_check(qs, &qc, text, len, &q, err))) break;
        if (q.keep)
            st = keep_doc(s, &out, err);
        else
            st = remove_doc(s, &out, q.rule_name,
                            json_pack("{s:f,s:f}", "value", q.value, "threshold", q.threshold), err);
    }
    anneal_clean_scratch_free(cs);
    anneal_quality_scratch_free(qs);
    json_object_set_new(
        s->counts, "clean",
        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "invalid_utf8", (json_int_t)cst.invalid_utf8,
                  "control_removed", (json_int_t)cst.control_removed, "chars_normalized",
                  (json_int_t)cst.chars_normalized, "html_removed", (json_int_t)cst.html_removed,
                  "whitespace_fixed", (json_int_t)cst.whitespace_fixed, "boilerplate_lines",
                  (json_int_t)cst.boilerplate_lines));
    return st;
}

static anneal_status run_pii(step_run *s, anneal_err *err) {
    anneal_pii_config pc = anneal_pii_config_default();
    json_t *pj = json_object_get(s->cfg, "pii");
    anneal_status st = pj ? anneal_pii_config_from_json(pj, "pii config", &pc, err) : ANNEAL_OK;
    if (st) return st;
    size_t counts[ANNEAL_PII_COUNT] = {0};
    char *buf = NULL;
    size_t blen = 0, bcap = 0;
    uint64_t changed = 0;
    anneal_doc d;
    bool eof = false;
    while (!(st = next_doc(s, &d, &eof, err)) && !eof) {
        if ((st = anneal_pii_redact(&pc, d.text, d.len, &buf, &blen, &bcap, counts, err))) break;
        anneal_doc out = d;
        out.text = buf;
        out.len = blen;
        if (blen != d.len || memcmp(buf, d.text, blen) != 0) changed++;
        if ((st = keep_doc(s, &out, err))) break;
    }
    anneal_free(buf);
    json_t *c = json_object();
    for (int k = 0; k < ANNEAL_PII_COUNT; k++)
        json_object_set_new(c, anneal_pii_kind_name(k), json_integer((json_int_t)counts[k]));
    json_object_set_new(c, "documents_changed", json_integer((json_int_t)changed));
    json_object_set_new(s->counts, "pii", c);
    return st;
}

#define DEDUP_BATCH 1024

typedef struct dedup_batch {
    char *texts[DEDUP_BATCH];
    size_t lens[DEDUP_BATCH];
    size_t n;
} dedup_batch;

static anneal_status flush_batch(anneal_dedup *dd, anneal_pool *pool, dedup_batch *b,
                                 anneal_err *err) {
    anneal_status st =
        anneal_dedup_add_batch(dd, pool, (const char *const *)b->texts, b->lens, b->n, err);
    for (size_t i = 0; i < b->n; i++)
        anneal_free(b->texts[i]);
    b->n = 0;
    return st;
}

static anneal_status run_dedup(step_run *s, anneal_err *err) {
    anneal_dedup_config dc = anneal_dedup_config_default();
    char *dj = NULL;
    anneal_status st = sub_json(s->cfg, "dedup", &dj, err);
    if (!st && dj) st = anneal_dedup_config_parse(dj, strlen(dj), "dedup config", &dc, err);
    free(dj);
    if (st) return st;
    anneal_dedup *dd = NULL;
    anneal_pool *pool = NULL;
    dedup_batch *b = anneal_calloc(1, sizeof *b);
    if (!b) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    st = anneal_dedup_new(&dc, s->o->spill_dir, &dd, err);
    int threads = s->o->threads > 0 ? s->o->threads : anneal_thread_count();
    if (!st && threads > 1) st = anneal_pool_new(threads, &pool, err);
    // Pass 1: every document's signature. Texts are copied into the batch because the
    // reader's pointers only last until its next call.
    anneal_doc d;
    bool eof = false;
    while (!st && !(st = next_doc(s, &d, &eof, err)) && !eof) {
        char *t = anneal_malloc(d.len ? d.len : 1);
        if (!t) {
            st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(t, d.text, d.len);
        b->texts[b->n] = t;
        b->lens[b->n++] = d.len;
        if (b->n == DEDUP_BATCH) st = flush_batch(dd, pool, b, err);
    }
    if (!st && b->n) st = flush_batch(dd, pool, b, err);
    for (size_t i = 0; i < b->n; i++)
        anneal_free(b->texts[i]);
    anneal_free(b);
    anneal_pool_free(pool);
    if (!st) st = anneal_dedup_finish(dd, err);
    // Pass 2: the same documents in the same order, each kept or dropped. Removed documents
    // name their cluster's representative by id, which pass 1 did not keep: record ids of
    // representatives as they go by (they always come first in their cluster).
    json_t *rep_ids = json_object(); // representative index (decimal) -> id
    uint64_t index = 0;
    if (!st) {
        s->docs_in = 0;
        st = anneal_reader_rewind(s->reader, err);
    }
    while (!st && !(st = next_doc(s, &d, &eof, err)) && !eof) {
        anneal_dedup_verdict v;
        if ((st = anneal_dedup_verdict_get(dd, index, &v))) {
            anneal_err_set(err, st, "dedup: input changed between passes at document %llu (%s)",
                           (unsigned long long)index, d.source);
            break;
        }
        char key[24];
        if (v.keep) {
            if (v.cluster >= 0) {
                snprintf(key, sizeof key, "%llu", (unsigned long long)index);
                json_object_set_new(rep_ids, key, json_stringn_nocheck(d.id, d.id_len));
            }
            st = keep_doc(s, &d, err);
        } else {
            snprintf(key, sizeof key, "%llu", (unsigned long long)v.representative);
            json_t *rid = json_object_get(rep_ids, key);
            st = remove_doc(s, &d, anneal_dedup_reason_name(v.reason),
                            json_pack("{s:O,s:I}", "duplicate_of", rid ? rid : json_null(),
                                      "cluster", (json_int_t)v.cluster),
                            err);
        }
        index++;
    }
    if (!st && s->reader && anneal_reader_stats_get(s->reader)->docs != index)
        st = anneal_err_set(err, ANNEAL_ERR_FORMAT, "dedup: input changed between passes");
    if (!st) {
        anneal_dedup_counts c;
        anneal_dedup_counts_get(dd, &c);
        // The largest clusters (ties: the earlier one), for the report.
        uint64_t top[TOP_CLUSTERS], top_size[TOP_CLUSTERS];
        size_t n_top = 0;
        for (uint64_t i = 0; i < c.clusters; i++) {
            anneal_dedup_cluster cl;
            if (anneal_dedup_cluster_get(dd, i, &cl)) break;
            size_t k = n_top < TOP_CLUSTERS ? n_top++ : TOP_CLUSTERS;
            while (k > 0 && top_size[k - 1] < cl.size) {
                if (k < TOP_CLUSTERS) {
                    top[k] = top[k - 1];
                    top_size[k] = top_size[k - 1];
                }
                k--;
            }
            if (k < TOP_CLUSTERS) {
                top[k] = i;
                top_size[k] = cl.size;
            }
        }
        json_t *clusters = json_array();
        for (size_t t = 0; t < n_top; t++) {
            uint64_t i = top[t];
            anneal_dedup_cluster cl;
            if (anneal_dedup_cluster_get(dd, i, &cl)) break;
            char key[24];
            snprintf(key, sizeof key, "%llu", (unsigned long long)cl.representative);
            json_t *rid = json_object_get(rep_ids, key);
            json_array_append_new(clusters, json_pack("{s:I,s:O,s:I}", "cluster", (json_int_t)i,
                                                      "representative", rid ? rid : json_null(),
                                                      "size", (json_int_t)cl.size));
        }
        json_object_set_new(s->counts, "dedup",
                            json_pack("{s:I,s:I,s:I,s:I,s:I,s:o}", "exact", (json_int_t)c.exact,
                                      "near", (json_int_t)c.near, "clusters",
                                      (json_int_t)c.clusters, "band_matches",
                                      (json_int_t)c.band_matches, "spill_runs",
                                      (json_int_t)c.spill_runs, "largest_clusters", clusters));
    }
    json_decref(rep_ids);
    anneal_dedup_free(dd);
    return st;
}

static anneal_status write_text_file(step_run *s, const char *name, const char *text, size_t len,
                                     anneal_err *err) {
    return anneal_dataset_write_file(s->writer, name, text, len, err);
}

static anneal_status run_audit(step_run *s, anneal_err *err) {
    anneal_audit_config ac = anneal_audit_config_default();
    json_t *aj = json_object_get(s->cfg, "audit");
    anneal_status st = ANNEAL_OK;
    if (aj) {
        const char *key;
        json_t *v;
        json_object_foreach(aj, key, v) {
            if (strcmp(key, "window") == 0 && json_is_integer(v) && json_integer_value(v) > 0 &&
                json_integer_value(v) <= 1000)
                ac.window = (int)json_integer_value(v);
            else if (strcmp(key, "min_mentions") == 0 && json_is_integer(v) &&
                     json_integer_value(v) >= 0)
                ac.min_mentions = (uint64_t)json_integer_value(v);
            else if (strcmp(key, "threshold") == 0 && json_is_number(v) &&
                     json_number_value(v) > 0)
                ac.threshold = json_number_value(v);
            else
                return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                      "%s: key 'audit.%s': unknown or out of range", s->what, key);
        }
    }
    char *lex = NULL;
    size_t lex_len = 0;
    json_t *lp = json_object_get(s->cfg, "lexicon");
    if (lp) {
        if (!json_is_string(lp))
            return bad_key(err, s->what, "lexicon", "the path of a lexicon file");
        st = anneal_read_file(json_string_value(lp), (size_t)64 << 20, &lex, &lex_len, err);
        if (st) return st;
    }
    anneal_audit *a = NULL;
    st = anneal_audit_new(lex, lex_len, lp ? json_string_value(lp) : NULL, &ac, &a, err);
    anneal_free(lex);
    anneal_doc d;
    bool eof = false;
    while (!st && !(st = next_doc(s, &d, &eof, err)) && !eof)
        st = anneal_audit_add(a, d.text, d.len, err);
    char *rj = NULL, *rm = NULL;
    size_t rjl = 0, rml = 0;
    if (!st) st = anneal_audit_report_json(a, &rj, &rjl, err);
    if (!st) st = anneal_audit_report_markdown(a, &rm, &rml, err);
    if (!st) st = write_text_file(s, "audit.json", rj, rjl, err);
    if (!st) st = write_text_file(s, "audit.md", rm, rml, err);
    if (!st) {
        uint64_t flagged = 0;
        for (size_t i = 0; i < anneal_audit_group_count(a); i++) {
            anneal_audit_group g;
            anneal_audit_group_get(a, i, &g);
            flagged += g.status == ANNEAL_AUDIT_FLAGGED;
        }
        json_object_set_new(s->counts, "audit",
                            json_pack("{s:I}", "groups_flagged", (json_int_t)flagged));
    }
    anneal_free(rj);
    anneal_free(rm);
    anneal_audit_free(a);
    return st;
}

static anneal_status run_shard(step_run *s, anneal_err *err) {
    json_t *tp = json_object_get(s->cfg, "tokenizer");
    if (!json_is_string(tp))
        return bad_key(err, s->what, "tokenizer", "the path of a GGUF vocabulary or model");
    double val = 0.1;
    uint64_t seed = 0, shard_bytes = 0;
    json_t *v;
    if ((v = json_object_get(s->cfg, "val_fraction"))) {
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1)
            return bad_key(err, s->what, "val_fraction", "a number from 0 to 1");
        val = json_number_value(v);
    }
    if ((v = json_object_get(s->cfg, "seed"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return bad_key(err, s->what, "seed", "a non-negative integer");
        seed = (uint64_t)json_integer_value(v);
    }
    if ((v = json_object_get(s->cfg, "shard_bytes"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 4096)
            return bad_key(err, s->what, "shard_bytes", "an integer of at least 4096");
        shard_bytes = (uint64_t)json_integer_value(v);
    }
    anneal_gguf *g = NULL;
    anneal_tokenizer *tok = NULL;
    anneal_status st = anneal_gguf_open(json_string_value(tp), &g, err);
    if (!st) st = anneal_tokenizer_load(g, &tok, err);
    char dir[4096];
    anneal_shard_writer *tw = NULL, *vw = NULL;
    if (!st) st = anneal_dataset_mkdir(s->writer, "shards", dir, sizeof dir, err);
    if (!st) {
        int32_t nv = anneal_tokenizer_n_vocab(tok), eos = anneal_tokenizer_eos(tok);
        if (eos < 0)
            st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                "%s: the vocabulary has no EOS token to separate documents",
                                json_string_value(tp));
        if (!st) st = anneal_shard_writer_new(dir, "train", (uint32_t)nv, eos, shard_bytes, &tw, err);
        if (!st) st = anneal_shard_writer_new(dir, "val", (uint32_t)nv, eos, shard_bytes, &vw, err);
    }
    anneal_token *ids = NULL;
    size_t cap = 0;
    anneal_doc d;
    bool eof = false;
    while (!st && !(st = next_doc(s, &d, &eof, err)) && !eof) {
        size_t n = 0;
        st = anneal_tokenizer_encode(tok, d.text, d.len, 0, ids, cap, &n, err);
        if (st == ANNEAL_ERR_RANGE || (!st && n > cap)) {
            size_t ncap = n + n / 2 + 16;
            anneal_token *p = anneal_realloc(ids, ncap * sizeof *p);
            if (!p) {
                st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
                break;
            }
            ids = p;
            cap = ncap;
            if (err) *err = (anneal_err){0};
            st = anneal_tokenizer_encode(tok, d.text, d.len, 0, ids, cap, &n, err);
        }
        if (st) break;
        // EOS inside a document would end it early for training: drop those tokens.
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (ids[i] != anneal_tokenizer_eos(tok)) ids[m++] = ids[i];
        bool is_val = anneal_split_is_val(d.id, d.id_len, val, seed);
        st = anneal_shard_writer_add(is_val ? vw : tw, ids, m, err);
        s->docs_out++;
    }
    if (!st) st = anneal_shard_writer_finish(tw, err);
    if (!st) st = anneal_shard_writer_finish(vw, err);
    if (!st) {
        size_t ts = 0, vs = 0;
        uint64_t tt = 0, td = 0, vt = 0, vd = 0;
        anneal_shard_writer_stats(tw, &ts, &tt, &td);
        anneal_shard_writer_stats(vw, &vs, &vt, &vd);
        json_object_set_new(s->counts, "shard",
                            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "vocab_size",
                                      (json_int_t)anneal_tokenizer_n_vocab(tok), "train_docs",
                                      (json_int_t)td, "train_tokens", (json_int_t)tt,
                                      "train_shards", (json_int_t)ts, "val_docs", (json_int_t)vd,
                                      "val_tokens", (json_int_t)vt, "val_shards", (json_int_t)vs));
    }
    anneal_free(ids);
    anneal_shard_writer_free(tw);
    anneal_shard_writer_free(vw);
    anneal_tokenizer_free(tok);
    anneal_gguf_close(g);
    return st;
}

// ---- reports -----------------------------------------------------------------------------

static void md_reasons(FILE *f, const char *title, json_t *table) {
    if (json_object_size(table) == 0) return;
    fprintf(f, "\n## %s\n\n| reason | documents |\n|---|---:|\n", title);
    const char *key;
    json_t *v;
    json_object_foreach(table, key, v)
        fprintf(f, "| %s | %lld |\n", key, (long long)json_integer_value(json_object_get(v, "count")));
    json_object_foreach(table, key, v) {
        fprintf(f, "\n### %s: examples\n\n", key);
        size_t i;
        json_t *ex;
        json_array_foreach(json_object_get(v, "examples"), i, ex) {
            json_t *src = json_object_get(ex, "source");
            json_t *txt = json_object_get(ex, "text");
            json_t *msg = json_object_get(ex, "message");
            fprintf(f, "- `%s`", src ? json_string_value(src) : "?");
            if (msg) fprintf(f, ": %s", json_string_value(msg));
            if (txt) {
                fputs(": \"", f);
                for (const char *p = json_string_value(txt); *p; p++)
                    fputc(*p == '\n' || *p == '\r' || *p == '|' || *p == '`' ? ' ' : *p, f);
                fputs("...\"", f);
            }
            fputc('\n', f);
        }
    }
}

static anneal_status write_reports(step_run *s, json_t *counts, anneal_err *err) {
    json_t *rep = json_pack("{s:s,s:O,s:O,s:O}", "step", anneal_data_step_name(s->o->step),
                            "counts", counts, "removed", s->reasons, "skipped", s->skipped);
    char *js = rep ? json_dumps(rep, JSON_INDENT(2)) : NULL;
    json_decref(rep);
    if (!js) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    size_t jl = strlen(js);
    js[jl] = '\0';
    anneal_status st = write_text_file(s, "report.json", js, jl, err);
    free(js);
    if (st) return st;
    char *md = NULL;
    size_t ml = 0;
    FILE *f = open_memstream(&md, &ml);
    if (!f) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    fprintf(f, "# anneal data %s\n\n| count | value |\n|---|---:|\n",
            anneal_data_step_name(s->o->step));
    const char *key;
    json_t *v;
    json_object_foreach(counts, key, v) {
        if (json_is_integer(v)) fprintf(f, "| %s | %lld |\n", key, (long long)json_integer_value(v));
    }
    json_object_foreach(counts, key, v) {
        if (!json_is_object(v)) continue;
        fprintf(f, "\n## %s\n\n| count | value |\n|---|---:|\n", key);
        const char *k2;
        json_t *v2;
        json_object_foreach(v, k2, v2)
            if (json_is_integer(v2))
                fprintf(f, "| %s | %lld |\n", k2, (long long)json_integer_value(v2));
    }
    md_reasons(f, "Removed documents", s->reasons);
    md_reasons(f, "Skipped input records", s->skipped);
    if (fclose(f) != 0) {
        free(md);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    }
    st = write_text_file(s, "report.md", md, ml, err);
    free(md);
    return st;
}

// ---- one step ----------------------------------------------------------------------------

// A file of an input dataset is recorded as "DIRNAME/docs/00000.jsonl" (the dataset's own
// directory name, then the path inside it): with the parent version it names the input
// exactly, and it stays the same wherever the dataset lives (pipelines build theirs in a
// temporary directory).
static char *dataset_label(const anneal_reader_input *in) {
    size_t dl = strlen(in->dataset);
    while (dl > 1 && in->dataset[dl - 1] == '/')
        dl--;
    size_t b = dl;
    while (b > 0 && in->dataset[b - 1] != '/')
        b--;
    if (strncmp(in->path, in->dataset, strlen(in->dataset)) != 0)
        return anneal_strndup(in->path, strlen(in->path));
    const char *rel = in->path + strlen(in->dataset);
    while (*rel == '/')
        rel++;
    size_t n = (dl - b) + 1 + strlen(rel) + 1;
    char *out = anneal_malloc(n);
    if (out) snprintf(out, n, "%.*s/%s", (int)(dl - b), in->dataset + b, rel);
    return out;
}

static anneal_status check_config(const anneal_data_step_options *o, json_t *cfg,
                                  const char *what, anneal_err *err) {
    if (!json_is_object(cfg))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: expected a JSON object", what);
    const char *key;
    json_t *v;
    json_object_foreach(cfg, key, v) {
        if (!key_allowed(o->step, key))
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "%s: unknown key '%s' for the %s step", what, key,
                                  anneal_data_step_name(o->step));
    }
    return ANNEAL_OK;
}

anneal_status anneal_data_step_run(const anneal_data_step_options *o,
                                   anneal_data_step_result *res, anneal_err *err) {
    if (res) *res = (anneal_data_step_result){0};
    if ((unsigned)o->step >= ANNEAL_STEP_COUNT)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "unknown step %d", (int)o->step);
    if (!o->outdir || !*o->outdir)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "no output directory (-o)");
    step_run s = {.o = o, .what = o->config_what ? o->config_what : "step config"};
    anneal_status st = ANNEAL_OK;
    if (o->config_json) {
        s.cfg = anneal_json_parse(o->config_json, strlen(o->config_json), s.what, err);
        if (!s.cfg) return err ? err->status : ANNEAL_ERR_FORMAT;
    } else {
        s.cfg = json_object();
    }
    s.reasons = json_object();
    s.skipped = json_object();
    s.counts = json_object();
    if (!s.cfg || !s.reasons || !s.skipped || !s.counts) {
        st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = check_config(o, s.cfg, s.what, err))) goto done;
    anneal_reader_config rc;
    if ((st = reader_config(s.cfg, s.what, &rc, err))) goto done;
    rc.on_skip = on_skip;
    rc.skip_user = &s;
    if ((st = anneal_reader_open(o->inputs, o->n_inputs, &rc, &s.reader, err))) goto done;
    if ((st = anneal_dataset_create(o->outdir, anneal_data_step_name(o->step),
                                    o->replace ? ANNEAL_DATASET_REPLACE : 0, &s.writer, err)))
        goto done;
    switch (o->step) {
    case ANNEAL_STEP_INGEST: st = run_ingest(&s, err); break;
    case ANNEAL_STEP_CLEAN: st = run_clean(&s, err); break;
    case ANNEAL_STEP_PII: st = run_pii(&s, err); break;
    case ANNEAL_STEP_DEDUP: st = run_dedup(&s, err); break;
    case ANNEAL_STEP_AUDIT: st = run_audit(&s, err); break;
    case ANNEAL_STEP_SHARD: st = run_shard(&s, err); break;
    default: break;
    }
    if (st) goto done;
    progress(&s, true);
    const anneal_reader_stats *rs = anneal_reader_stats_get(s.reader);
    json_t *counts = json_pack("{s:I,s:I,s:I,s:I,s:I}", "documents_in", (json_int_t)s.docs_in,
                               "documents_out", (json_int_t)s.docs_out, "removed",
                               (json_int_t)s.removed, "skipped", (json_int_t)rs->skipped_total,
                               "bytes_in", (json_int_t)rs->bytes);
    if (!counts || json_object_update(counts, s.counts)) {
        json_decref(counts);
        st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
        goto done;
    }
    st = write_reports(&s, counts, err);
    char *cfg_text = json_dumps(s.cfg, JSON_COMPACT | JSON_SORT_KEYS);
    char *counts_text = json_dumps(counts, JSON_COMPACT);
    json_decref(counts);
    if (!st && (!cfg_text || !counts_text)) st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    char version[65] = "";
    if (!st) {
        size_t n_in = anneal_reader_input_count(s.reader);
        anneal_manifest_input *ins = anneal_calloc(n_in ? n_in : 1, sizeof *ins);
        const char *parent = NULL;
        if (!ins) st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
        char **labels = anneal_calloc(n_in ? n_in : 1, sizeof *labels);
        if (!labels) st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
        for (size_t i = 0; !st && i < n_in; i++) {
            const anneal_reader_input *in = anneal_reader_input_get(s.reader, i);
            ins[i] = (anneal_manifest_input){.path = in->path, .bytes = in->size,
                                             .hashed = in->sha256_done};
            memcpy(ins[i].sha256, in->sha256, 32);
            if (in->dataset && in->dataset_version[0]) {
                parent = in->dataset_version;
                if (!(ins[i].path = labels[i] = dataset_label(in)))
                    st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
            }
        }
        anneal_manifest_info info = {.parent = parent,
                                     .inputs = ins,
                                     .n_inputs = n_in,
                                     .config_json = cfg_text,
                                     .counts_json = counts_text};
        if (!st) st = anneal_dataset_commit(s.writer, &info, version, err);
        for (size_t i = 0; labels && i < n_in; i++)
            anneal_free(labels[i]);
        anneal_free(labels);
        anneal_free(ins);
    }
    free(cfg_text);
    free(counts_text);
    if (!st && res) {
        memcpy(res->version, version, sizeof res->version);
        res->docs_in = s.docs_in;
        res->docs_out = s.docs_out;
        res->removed = s.removed;
        res->skipped = rs->skipped_total;
    }
done:
    if (st && s.writer) anneal_dataset_abort(s.writer);
    anneal_dataset_writer_free(s.writer);
    anneal_reader_free(s.reader);
    json_decref(s.cfg);
    json_decref(s.reasons);
    json_decref(s.skipped);
    json_decref(s.counts);
    return st;
}

// ---- pipelines ---------------------------------------------------------------------------

// path relative to base's directory unless absolute; caller frees.
static char *resolve(const char *base, const char *path) {
    if (path[0] == '/' || !base || !strchr(base, '/')) return anneal_strndup(path, strlen(path));
    size_t dl = (size_t)(strrchr(base, '/') - base) + 1, pl = strlen(path);
    char *out = anneal_malloc(dl + pl + 1);
    if (!out) return NULL;
    memcpy(out, base, dl);
    memcpy(out + dl, path, pl + 1);
    return out;
}

static bool produces_docs(anneal_data_step s) {
    return s != ANNEAL_STEP_AUDIT && s != ANNEAL_STEP_SHARD;
}

void anneal_data_pipeline_result_free(anneal_data_pipeline_result *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_steps; i++)
        anneal_free(r->steps[i].dir);
    anneal_free(r->steps);
    anneal_free(r->output);
    *r = (anneal_data_pipeline_result){0};
}

anneal_status anneal_data_pipeline_run(const char *json, size_t len, const char *what,
                                       bool replace, anneal_data_progress_fn progress_fn,
                                       anneal_skip_fn skip_fn, void *user,
                                       anneal_data_pipeline_result *res, anneal_err *err) {
    *res = (anneal_data_pipeline_result){0};
    if (!what) what = "pipeline";
    // A TOML file becomes the same jansson value a JSON one would, so one path follows.
    size_t wl = strlen(what);
    bool toml = wl >= 5 && strcmp(what + wl - 5, ".toml") == 0;
    json_t *root = toml ? anneal_toml_parse(json, len, what, err)
                        : anneal_json_parse(json, len, what, err);
    if (!root) return err ? err->status : ANNEAL_ERR_FORMAT;
    anneal_status st = ANNEAL_OK;
    char **inputs = NULL;
    size_t n_inputs = 0;
    char *output = NULL;
    json_t *steps_done = json_array();
    anneal_dataset_writer *w = NULL;
    json_t *jin = json_object_get(root, "inputs"), *jout = json_object_get(root, "output"),
           *jsteps = json_object_get(root, "steps");
    const char *key;
    json_t *v;
    if (!json_is_object(root)) {
        st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: expected a JSON object", what);
        goto done;
    }
    json_object_foreach(root, key, v) {
        if (strcmp(key, "inputs") && strcmp(key, "output") && strcmp(key, "steps")) {
            st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                "%s: unknown key '%s' (inputs, output, steps)", what, key);
            goto done;
        }
    }
    if (!json_is_array(jin) || json_array_size(jin) == 0) {
        st = bad_key(err, what, "inputs", "a non-empty array of paths");
        goto done;
    }
    if (!json_is_string(jout) || json_string_length(jout) == 0) {
        st = bad_key(err, what, "output", "a directory path");
        goto done;
    }
    if (!json_is_array(jsteps) || json_array_size(jsteps) == 0) {
        st = bad_key(err, what, "steps", "a non-empty array of step objects");
        goto done;
    }
    size_t n_steps = json_array_size(jsteps);
    // Check every step before running any, so a typo in the last step costs nothing.
    for (size_t i = 0; i < n_steps; i++) {
        json_t *s = json_array_get(jsteps, i);
        json_t *name = json_object_get(s, "step");
        anneal_data_step step;
        if (!json_is_object(s) || !json_is_string(name)) {
            st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                "%s: steps[%zu]: expected an object with a \"step\" name", what, i);
            goto done;
        }
        if ((st = anneal_data_step_parse(json_string_value(name), &step, err))) goto done;
        json_object_foreach(s, key, v) {
            if (strcmp(key, "step") != 0 && !key_allowed(step, key)) {
                st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                    "%s: steps[%zu]: unknown key '%s' for the %s step", what, i,
                                    key, anneal_data_step_name(step));
                goto done;
            }
        }
    }
    n_inputs = json_array_size(jin);
    inputs = anneal_calloc(n_inputs, sizeof *inputs);
    res->steps = anneal_calloc(n_steps, sizeof *res->steps);
    output = resolve(what, json_string_value(jout));
    if (!inputs || !res->steps || !output || !steps_done) {
        st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_inputs; i++) {
        json_t *p = json_array_get(jin, i);
        if (!json_is_string(p)) {
            st = anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: inputs[%zu]: expected a path",
                                what, i);
            goto done;
        }
        if (!(inputs[i] = resolve(what, json_string_value(p)))) {
            st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    // The pipeline's output is itself a dataset directory (step "pipeline") holding one
    // dataset per step, so it appears only when every step is done and verify covers it all.
    if ((st = anneal_dataset_create(output, "pipeline", replace ? ANNEAL_DATASET_REPLACE : 0, &w,
                                    err)))
        goto done;
    // Each step reads the documents of the last step that produced some.
    char *cur_input = NULL;
    const char *const *step_inputs = (const char *const *)inputs;
    size_t step_n = n_inputs;
    for (size_t i = 0; i < n_steps && !st; i++) {
        json_t *s = json_deep_copy(json_array_get(jsteps, i));
        anneal_data_step step;
        anneal_data_step_parse(json_string_value(json_object_get(s, "step")), &step, NULL);
        json_object_del(s, "step");
        // Paths inside a step (tokenizer, lexicon) are relative to the pipeline file too.
        const char *path_keys[] = {"tokenizer", "lexicon"};
        for (int k = 0; k < 2; k++) {
            json_t *pv = json_object_get(s, path_keys[k]);
            if (!json_is_string(pv)) continue;
            char *rp = resolve(what, json_string_value(pv));
            if (rp) json_object_set_new(s, path_keys[k], json_string(rp));
            anneal_free(rp);
        }
        char *cfg_text = json_dumps(s, JSON_COMPACT);
        json_decref(s);
        char name[32], step_what[64], dir[4096];
        snprintf(name, sizeof name, "%02zu-%s", i + 1, anneal_data_step_name(step));
        snprintf(step_what, sizeof step_what, "%s: steps[%zu]", what, i);
        if (!cfg_text) {
            st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
            break;
        }
        // The step's writer makes its own temporary sibling of dir inside ours.
        int dl = snprintf(dir, sizeof dir, "%s/%s", anneal_dataset_tmpdir(w), name);
        if (dl < 0 || (size_t)dl >= sizeof dir) {
            free(cfg_text);
            st = anneal_err_set(err, ANNEAL_ERR_RANGE, "%s: output path too long", what);
            break;
        }
        anneal_data_step_options o = {.step = step,
                                      .config_json = cfg_text,
                                      .config_what = step_what,
                                      .inputs = step_inputs,
                                      .n_inputs = step_n,
                                      .outdir = dir,
                                      .on_skip = i == 0 ? skip_fn : NULL,
                                      .progress = progress_fn,
                                      .user = user};
        anneal_data_step_result r;
        st = anneal_data_step_run(&o, &r, err);
        free(cfg_text);
        if (st) break;
        size_t ol = strlen(output) + strlen(name) + 2;
        char *final_dir = anneal_malloc(ol);
        if (!final_dir) {
            st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
            break;
        }
        snprintf(final_dir, ol, "%s/%s", output, name);
        res->steps[res->n_steps].result = r;
        res->steps[res->n_steps++].dir = final_dir;
        json_array_append_new(steps_done,
                              json_pack("{s:s,s:s,s:s,s:I,s:I}", "step",
                                        anneal_data_step_name(step), "dir", name, "version",
                                        r.version, "documents_out", (json_int_t)r.docs_out,
                                        "skipped", (json_int_t)r.skipped));
        if (produces_docs(step)) {
            anneal_free(cur_input);
            cur_input = anneal_strndup(dir, strlen(dir));
            step_inputs = (const char *const *)&cur_input;
            step_n = 1;
        }
    }
    anneal_free(cur_input);
    if (!st) {
        anneal_manifest_input *ins = anneal_calloc(n_inputs, sizeof *ins);
        json_t *cfg_obj = json_pack("{s:O}", "steps", jsteps);
        json_t *counts = json_pack("{s:O}", "steps", steps_done);
        char *cfg_text = cfg_obj ? json_dumps(cfg_obj, JSON_COMPACT) : NULL;
        char *counts_text = counts ? json_dumps(counts, JSON_COMPACT) : NULL;
        if (!ins || !cfg_text || !counts_text) st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
        // Directories among the inputs are listed by the first step's manifest; the pipeline
        // records the files and hashes them at commit.
        size_t n_files = 0;
        for (size_t i = 0; !st && i < n_inputs; i++) {
            struct stat sb;
            if (stat(inputs[i], &sb) == 0 && S_ISREG(sb.st_mode))
                ins[n_files++] = (anneal_manifest_input){.path = inputs[i]};
        }
        anneal_manifest_info info = {.inputs = ins,
                                     .n_inputs = n_files,
                                     .config_json = cfg_text,
                                     .counts_json = counts_text};
        if (!st) st = anneal_dataset_commit(w, &info, res->version, err);
        anneal_free(ins);
        free(cfg_text);
        free(counts_text);
        json_decref(cfg_obj);
        json_decref(counts);
    }
    if (!st) {
        res->output = output;
        output = NULL;
    }
done:
    anneal_dataset_writer_free(w);
    if (st) anneal_data_pipeline_result_free(res);
    for (size_t i = 0; inputs && i < n_inputs; i++)
        anneal_free(inputs[i]);
    anneal_free(inputs);
    anneal_free(output);
    json_decref(steps_done);
    json_decref(root);
    return st;
}
