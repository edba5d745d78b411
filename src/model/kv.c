// Paged KV cache: one pool of fixed-size blocks shared by all sequences, a block table
// per sequence, blocks taken on demand and returned on clear/truncate, full blocks shared
// between sequences by reference count (prompt prefix reuse).
#include "model_internal.h"

anneal_kv_params anneal_kv_params_default(int32_t n_ctx, int32_t max_seqs) {
    anneal_kv_params p = {
        .block_size = 16, .max_seqs = max_seqs, .max_len = n_ctx, .type = ANNEAL_TYPE_F16};
    int64_t per_seq = n_ctx > 0 ? ((int64_t)n_ctx + p.block_size - 1) / p.block_size : 0;
    int64_t n = per_seq * (max_seqs > 0 ? max_seqs : 0);
    p.n_blocks = n > INT32_MAX ? INT32_MAX : (int32_t)n;
    return p;
}

anneal_status anneal_kv_new(const anneal_model *m, const anneal_kv_params *p, anneal_kv **out,
                            anneal_err *err) {
    *out = NULL;
    if (p->block_size < 1 || p->block_size > 65536)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "kv block_size %d is not in 1..65536",
                              (int)p->block_size);
    if (p->n_blocks < 1)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "kv n_blocks %d is not positive",
                              (int)p->n_blocks);
    if (p->max_seqs < 1 || p->max_seqs > (1 << 20))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "kv max_seqs %d is not in 1..%d",
                              (int)p->max_seqs, 1 << 20);
    if (p->max_len < 1)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "kv max_len %d is not positive",
                              (int)p->max_len);
    if (p->type != ANNEAL_TYPE_F16 && p->type != ANNEAL_TYPE_F32)
        return anneal_err_set(err, ANNEAL_ERR_UNSUPPORTED,
                              "kv type %u: only f16 and f32 are supported", p->type);
    const anneal_model_config *c = &m->cfg;
    size_t elem = p->type == ANNEAL_TYPE_F16 ? 2 : 4;
    size_t rows, bytes;
    if (!anneal_mul_ok((size_t)c->n_layer * (size_t)p->n_blocks, (size_t)p->block_size, &rows) ||
        !anneal_mul_ok(rows, (size_t)c->n_head_kv * (size_t)c->head_dim * elem, &bytes))
        return anneal_err_set(err, ANNEAL_ERR_RANGE, "kv cache of %d blocks of %d is too large",
                              (int)p->n_blocks, (int)p->block_size);
    int32_t seq_blocks = (int32_t)(((int64_t)p->max_len + p->block_size - 1) / p->block_size);
    anneal_kv *kv = anneal_calloc(1, sizeof *kv);
    if (!kv) return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory for the kv cache");
    kv->n_layer = c->n_layer;
    kv->kv_dim = c->n_head_kv * c->head_dim;
    kv->block_size = p->block_size;
    kv->n_blocks = p->n_blocks;
    kv->max_seqs = p->max_seqs;
    kv->max_len = p->max_len;
    kv->max_seq_blocks = seq_blocks;
    kv->type = p->type;
    kv->elem_size = elem;
    kv->k = anneal_aligned_alloc(64, bytes);
    kv->v = anneal_aligned_alloc(64, bytes);
    kv->free_list = anneal_calloc((size_t)p->n_blocks, sizeof *kv->free_list);
    kv->ref = anneal_calloc((size_t)p->n_blocks, sizeof *kv->ref);
    kv->table =
        anneal_realloc_array(NULL, (size_t)p->max_seqs * (size_t)seq_blocks, sizeof(int32_t));
    kv->len = anneal_calloc((size_t)p->max_seqs, sizeof *kv->len);
    kv->n_held = anneal_calloc((size_t)p->max_seqs, sizeof *kv->n_held);
    kv->scratch = anneal_calloc(2 * (size_t)p->max_seqs, sizeof *kv->scratch);
    if (!kv->k || !kv->v || !kv->free_list || !kv->ref || !kv->table || !kv->len || !kv->n_held ||
        !kv->scratch) {
        anneal_kv_free(kv);
        return anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory for a kv cache of %zu bytes",
                              2 * bytes);
    }
    // Lowest block ids on top of the stack, so a fresh cache hands out 0, 1, 2, ...
    for (int32_t i = 0; i < p->n_blocks; i++)
        kv->free_list[i] = p->n_blocks - 1 - i;
    kv->n_free = p->n_blocks;
    *out = kv;
    return ANNEAL_OK;
}

void anneal_kv_free(anneal_kv *kv) {
    if (!kv) return;
    anneal_free(kv->k);
    anneal_free(kv->v);
    anneal_free(kv->free_list);
    anneal_free(kv->ref);
    anneal_free(kv->table);
    anneal_free(kv->len);
    anneal_free(kv->n_held);
    anneal_free(kv->scratch);
    anneal_free(kv);
}

int32_t anneal_kv_seq_len(const anneal_kv *kv, int32_t seq) {
    if (seq < 0 || seq >= kv->max_seqs) return -1;
    return kv->len[seq];
}

// Drops seq's hold on its blocks beyond the first `keep`; a block returns to the pool when
// no sequence holds it any more.
static void release(anneal_kv *kv, int32_t seq, int32_t keep) {
    int32_t *tab = &kv->table[(size_t)seq * (size_t)kv->max_seq_blocks];
    while (kv->n_held[seq] > keep) {
        int32_t b = tab[--kv->n_held[seq]];
        if (--kv->ref[b] == 0) kv->free_list[kv->n_free++] = b;
    }
}

// Copies the first n_slots rows of every layer's K and V from physical block src to dst.
static void copy_block(anneal_kv *kv, int32_t dst, int32_t src, int32_t n_slots) {
    size_t bytes = (size_t)n_slots * (size_t)kv->kv_dim * kv->elem_size;
    for (int32_t l = 0; l < kv->n_layer; l++) {
        memcpy(kv_row(kv, kv->k, l, dst, 0), kv_row(kv, kv->k, l, src, 0), bytes);
        memcpy(kv_row(kv, kv->v, l, dst, 0), kv_row(kv, kv->v, l, src, 0), bytes);
    }
}

static int32_t take_block(anneal_kv *kv) {
    int32_t b = kv->free_list[--kv->n_free];
    kv->ref[b] = 1;
    return b;
}

void anneal_kv_seq_clear(anneal_kv *kv, int32_t seq) {
    if (seq < 0 || seq >= kv->max_seqs) return;
    release(kv, seq, 0);
    kv->len[seq] = 0;
}

anneal_status anneal_kv_seq_truncate(anneal_kv *kv, int32_t seq, int32_t n_pos, anneal_err *err) {
    if (seq < 0 || seq >= kv->max_seqs)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "sequence %d is not in 0..%d", (int)seq,
                              (int)kv->max_seqs - 1);
    if (n_pos < 0 || n_pos > kv->len[seq])
        return anneal_err_set(err, ANNEAL_ERR_RANGE,
                              "cannot truncate sequence %d to %d positions: it has %d", (int)seq,
                              (int)n_pos, (int)kv->len[seq]);
    int32_t keep = (n_pos + kv->block_size - 1) / kv->block_size;
    int32_t *tab = &kv->table[(size_t)seq * (size_t)kv->max_seq_blocks];
    // A kept partial block that another sequence also holds would be overwritten by the
    // next append: give this sequence its own copy (copy on write).
    bool cow = n_pos % kv->block_size != 0 && kv->ref[tab[keep - 1]] > 1;
    if (cow) {
        int32_t freed = 0;
        for (int32_t i = keep; i < kv->n_held[seq]; i++)
            freed += kv->ref[tab[i]] == 1;
        if (kv->n_free + freed == 0)
            return anneal_err_set(err, ANNEAL_ERR_LIMIT,
                                  "cannot truncate sequence %d to %d positions: its last block "
                                  "is shared and no block is free for a private copy",
                                  (int)seq, (int)n_pos);
    }
    release(kv, seq, keep);
    if (cow) {
        int32_t b = take_block(kv);
        copy_block(kv, b, tab[keep - 1], n_pos % kv->block_size);
        kv->ref[tab[keep - 1]]--;
        tab[keep - 1] = b;
    }
    kv->len[seq] = n_pos;
    return ANNEAL_OK;
}

anneal_status anneal_kv_seq_share(anneal_kv *kv, int32_t dst, int32_t src, int32_t n_pos,
                                  anneal_err *err) {
    if (dst < 0 || dst >= kv->max_seqs || src < 0 || src >= kv->max_seqs || dst == src)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "share: sequences %d and %d must be distinct and in 0..%d", (int)dst,
                              (int)src, (int)kv->max_seqs - 1);
    if (kv->len[dst] != 0 || kv->n_held[dst] != 0)
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "share: sequence %d is not empty (%d positions)", (int)dst,
                              (int)kv->len[dst]);
    if (n_pos < 0 || n_pos > kv->len[src])
        return anneal_err_set(err, ANNEAL_ERR_RANGE,
                              "share: %d positions asked of sequence %d, which has %d", (int)n_pos,
                              (int)src, (int)kv->len[src]);
    int32_t full = n_pos / kv->block_size, part = n_pos % kv->block_size;
    if (part && kv->n_free == 0)
        return anneal_err_set(err, ANNEAL_ERR_LIMIT,
                              "share: no free block for the partial block of %d positions",
                              (int)part);
    const int32_t *ts = &kv->table[(size_t)src * (size_t)kv->max_seq_blocks];
    int32_t *td = &kv->table[(size_t)dst * (size_t)kv->max_seq_blocks];
    for (int32_t i = 0; i < full; i++) {
        td[i] = ts[i];
        kv->ref[ts[i]]++;
    }
    if (part) {
        td[full] = take_block(kv);
        copy_block(kv, td[full], ts[full], part);
    }
    kv->n_held[dst] = full + (part ? 1 : 0);
    kv->len[dst] = n_pos;
    return ANNEAL_OK;
}

int32_t anneal_kv_free_blocks(const anneal_kv *kv) {
    return kv->n_free;
}

uint64_t anneal_kv_bytes(const anneal_kv *kv) {
    return 2ull * (uint64_t)kv->n_layer * (uint64_t)kv->n_blocks * (uint64_t)kv->block_size *
           (uint64_t)kv->kv_dim * kv->elem_size;
}

int32_t kv_blocks_needed(const anneal_kv *kv, int32_t seq, int32_t new_len) {
    int32_t want = (int32_t)(((int64_t)new_len + kv->block_size - 1) / kv->block_size);
    return want > kv->n_held[seq] ? want - kv->n_held[seq] : 0;
}

void kv_grow(anneal_kv *kv, int32_t seq, int32_t new_len) {
    int32_t *tab = &kv->table[(size_t)seq * (size_t)kv->max_seq_blocks];
    int32_t want = (int32_t)(((int64_t)new_len + kv->block_size - 1) / kv->block_size);
    while (kv->n_held[seq] < want)
        tab[kv->n_held[seq]++] = take_block(kv);
    kv->len[seq] = new_len;
}
