// PII detection and redaction: one left-to-right pass over bytes with cheap triggers per kind.
#include "anneal/data.h"

#include <jansson.h>
#include <string.h>

static const char *const KIND_NAMES[ANNEAL_PII_COUNT] = {"email", "phone", "ipv4", "ipv6",
                                                         "card",  "iban",  "ssn"};
// Tokens hold no digit, '@', ':' or hex-only word, so redacted text never rematches them.
static const char *const DEFAULT_TOKENS[ANNEAL_PII_COUNT] = {
    "<EMAIL>", "<PHONE>", "<IPV4>", "<IPV6>", "<CARD>", "<IBAN>", "<SSN>"};

const char *anneal_pii_kind_name(anneal_pii_kind kind) {
    return (unsigned)kind < ANNEAL_PII_COUNT ? KIND_NAMES[kind] : "?";
}

anneal_pii_config anneal_pii_config_default(void) {
    anneal_pii_config c;
    for (int k = 0; k < ANNEAL_PII_COUNT; k++) {
        c.enabled[k] = true;
        c.replacement[k] = DEFAULT_TOKENS[k];
    }
    return c;
}

anneal_status anneal_pii_config_from_json(const void *obj, const char *what,
                                          anneal_pii_config *cfg, anneal_err *err) {
    const json_t *root = obj;
    if (!what) what = "pii config";
    if (!json_is_object(root))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "%s: expected a JSON object", what);
    anneal_pii_config c = *cfg;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)root, key, v) {
        int k = 0;
        while (k < ANNEAL_PII_COUNT && strcmp(key, anneal_pii_kind_name(k)) != 0)
            k++;
        if (k == ANNEAL_PII_COUNT)
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "%s: unknown key '%s' (email, phone, ipv4, ipv6, card, iban, ssn)",
                                  what, key);
        if (json_is_boolean(v)) {
            c.enabled[k] = json_is_true(v);
        } else if (json_is_string(v) && json_string_length(v) <= 64) {
            c.enabled[k] = true;
            c.replacement[k] = json_string_value(v);
        } else {
            return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                                  "%s: key '%s': expected true, false or a replacement string of "
                                  "at most 64 bytes",
                                  what, key);
        }
    }
    *cfg = c;
    return ANNEAL_OK;
}

static inline bool is_digit(uint8_t c) {
    return (unsigned)(c - '0') < 10;
}
static inline bool is_upper(uint8_t c) {
    return (unsigned)(c - 'A') < 26;
}
static inline bool is_alpha(uint8_t c) {
    return (unsigned)((c | 32) - 'a') < 26;
}
static inline bool is_alnum(uint8_t c) {
    return is_digit(c) || is_alpha(c);
}
static inline bool is_hex(uint8_t c) {
    return is_digit(c) || (unsigned)((c | 32) - 'a') < 6;
}
static inline bool is_local(uint8_t c) {
    return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}
// Characters that glue two alphanumeric runs into one token ("1.2.3.4.5", "555-1234-99").
static inline bool is_joiner(uint8_t c) {
    return c == '.' || c == '-' || c == ':' || c == '+' || c == '(';
}

typedef struct text {
    const uint8_t *p;
    size_t n;
    // The first byte of the next e-mail and the last byte of the previous one read as the
    // '<' and '>' of their tokens, so the boundary checks give the same answer on the
    // redacted text (re-redaction finds nothing new).
    size_t open_at, close_at;
} text;

static inline uint8_t at(const text *t, size_t k) {
    return k == t->open_at ? '<' : k == t->close_at ? '>' : t->p[k];
}

// A match may start at alphanumeric i only if i does not continue a word or a glued run.
static bool left_ok(const text *t, size_t i) {
    if (i == 0) return true;
    uint8_t c = at(t, i - 1);
    if (is_alnum(c)) return false;
    return !(is_joiner(c) && i >= 2 && is_alnum(at(t, i - 2)));
}

// '+' and '(' starts are joiners themselves: any joiner or word character before blocks them.
static bool left_ok_strict(const text *t, size_t i) {
    return i == 0 || (!is_alnum(at(t, i - 1)) && !is_joiner(at(t, i - 1)));
}

// A match may end before e only if e does not continue a word or a glued run. A match that
// ends in a non-word byte (')', "::") does not block a match right after it, which may then
// become a token: so for such a match a '<' counts as a word byte, for the same answer
// before and after redaction.
static bool right_ok(const text *t, size_t e) {
    if (e >= t->n) return true;
    bool soft_end = e > 0 && !is_alnum(at(t, e - 1));
    uint8_t c = at(t, e);
    if (is_alnum(c) || (soft_end && c == '<')) return false;
    if (!is_joiner(c) || e + 1 >= t->n) return true;
    uint8_t c2 = at(t, e + 1);
    return !(is_alnum(c2) || (soft_end && c2 == '<'));
}

// ---- e-mail -------------------------------------------------------------------------

// The address around the '@' at a, not starting before lo; [*s, *e) on success.
static bool match_email(const text *t, size_t lo, size_t a, size_t *s, size_t *e) {
    const uint8_t *p = t->p;
    size_t k = a;
    while (k > lo && is_local(p[k - 1]) && !(p[k - 1] == '.' && k < a && p[k] == '.'))
        k--;
    while (k < a && p[k] == '.')
        k++;
    if (k == a || p[a - 1] == '.') return false;
    size_t j = a + 1, labels = 0, last = j;
    for (;;) {
        size_t ls = j;
        while (j < t->n && (is_alnum(p[j]) || p[j] == '-'))
            j++;
        if (j == ls || j - ls > 63 || p[ls] == '-' || p[j - 1] == '-') return false;
        labels++;
        last = ls;
        if (j + 1 < t->n && p[j] == '.' && is_alnum(p[j + 1])) {
            j++;
            continue;
        }
        break;
    }
    if (labels < 2 || j - last < 2 || j - (a + 1) > 253) return false;
    for (size_t q = last; q < j; q++)
        if (!is_alpha(p[q])) return false;
    *s = k;
    *e = j;
    return true;
}

// ---- card ---------------------------------------------------------------------------

static bool luhn_ok(const uint8_t *d, int n) {
    int sum = 0;
    for (int i = 0; i < n; i++) {
        int v = d[n - 1 - i];
        if (i & 1) {
            v *= 2;
            if (v > 9) v -= 9;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

// Known issuer prefixes and their lengths.
static bool iin_ok(const uint8_t *d, int n) {
    int p2 = d[0] * 10 + d[1], p3 = p2 * 10 + d[2], p4 = p3 * 10 + d[3];
    bool l16_19 = n >= 16 && n <= 19;
    if (d[0] == 4) return n == 13 || n == 16 || n == 19;                   // Visa
    if (p2 >= 51 && p2 <= 55) return n == 16;                              // Mastercard
    if (p4 >= 2221 && p4 <= 2720) return n == 16;                          // Mastercard 2-series
    if (p2 == 34 || p2 == 37) return n == 15;                              // American Express
    if (p4 == 6011 || (p3 >= 644 && p3 <= 649) || p2 == 65) return l16_19; // Discover
    if (p4 >= 3528 && p4 <= 3589) return l16_19;                           // JCB
    if ((p3 >= 300 && p3 <= 305) || p2 == 36 || p2 == 38 || p2 == 39)
        return n >= 14 && n <= 19; // Diners Club
    if (p2 == 62) return l16_19;   // UnionPay
    return false;
}

// Digits in groups split by one consistent separator; the longest prefix of whole groups
// that is a valid card wins, so what follows (perhaps redacted later) cannot change it.
static size_t match_card(const text *t, size_t i, size_t lim) {
    const uint8_t *p = t->p;
    uint8_t d[20];
    int nd = 0, ng = 0, gnd[20], glen[20];
    size_t gend[20];
    uint8_t sep = 0;
    size_t j = i;
    for (;;) {
        size_t gs = j;
        while (j < lim && is_digit(p[j]) && nd < 20)
            d[nd++] = (uint8_t)(p[j++] - '0');
        gend[ng] = j;
        gnd[ng] = nd;
        glen[ng++] = (int)(j - gs);
        if (nd == 20 || ng == 20) break;
        if (j + 1 < lim && (p[j] == ' ' || p[j] == '-') && (!sep || sep == p[j]) &&
            is_digit(p[j + 1])) {
            sep = p[j++];
            continue;
        }
        break;
    }
    for (int g = ng; g > 0; g--) {
        int n = gnd[g - 1];
        if (n < 13 || n > 19) continue;
        bool groups_ok = true;
        for (int q = 0; q < g && g > 1; q++)
            groups_ok = groups_ok && glen[q] <= 6 && (glen[q] >= 3 || q == g - 1);
        if (groups_ok && right_ok(t, gend[g - 1]) && iin_ok(d, n) && luhn_ok(d, n))
            return gend[g - 1] - i;
    }
    return 0;
}

// ---- SSN ----------------------------------------------------------------------------

static size_t match_ssn(const text *t, size_t i, size_t lim) {
    const uint8_t *p = t->p;
    if (lim - i < 11) return 0;
    for (int k = 0; k < 11; k++) {
        bool dash = k == 3 || k == 6;
        if (dash ? p[i + k] != '-' : !is_digit(p[i + k])) return 0;
    }
    int area = (p[i] - '0') * 100 + (p[i + 1] - '0') * 10 + (p[i + 2] - '0');
    int group = (p[i + 4] - '0') * 10 + (p[i + 5] - '0');
    int serial = (p[i + 7] - '0') * 1000 + (p[i + 8] - '0') * 100 + (p[i + 9] - '0') * 10 +
                 (p[i + 10] - '0');
    if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0) return 0;
    return right_ok(t, i + 11) ? 11 : 0;
}

// ---- IPv4 ---------------------------------------------------------------------------

// Four dotted octets from i, no leading zeros; length or 0. No boundary check.
static size_t parse_ipv4(const uint8_t *p, size_t i, size_t lim) {
    size_t j = i;
    for (int o = 0; o < 4; o++) {
        if (o) {
            if (j >= lim || p[j] != '.') return 0;
            j++;
        }
        size_t s = j;
        int v = 0;
        while (j < lim && is_digit(p[j]) && j - s < 3)
            v = v * 10 + (p[j++] - '0');
        if (j == s || v > 255 || (j - s > 1 && p[s] == '0')) return 0;
        if (j < lim && is_digit(p[j])) return 0;
    }
    return j - i;
}

static size_t match_ipv4(const text *t, size_t i, size_t lim) {
    size_t n = parse_ipv4(t->p, i, lim);
    return n && right_ok(t, i + n) ? n : 0;
}

// ---- IPv6 ---------------------------------------------------------------------------

// Parsed group by group (no look past what the grammar takes), so bytes after the address
// only matter through right_ok.
static size_t match_ipv6(const text *t, size_t i, size_t lim) {
    const uint8_t *p = t->p;
    if (i > 0 && at(t, i - 1) == ':') return 0; // the tail of a longer colon run
    int groups = 0, explicit_groups = 0;
    bool compressed = false, digit = false;
    size_t j = i, end = i;
    for (;;) {
        size_t s = j;
        while (j < lim && j - s < 4 && is_hex(p[j]))
            j++;
        if (j < lim && is_hex(p[j])) return 0; // five hex digits
        if (j == s) break;                     // only after "::"
        size_t v4 = j < lim && p[j] == '.' ? parse_ipv4(p, s, lim) : 0;
        if (v4) {
            groups += 2;
            explicit_groups++;
            digit = true;
            end = s + v4;
            break;
        }
        groups++;
        explicit_groups++;
        for (size_t q = s; q < j; q++)
            digit |= is_digit(p[q]);
        end = j;
        if (groups >= 8) break;
        if (j + 1 < lim && p[j] == ':' && p[j + 1] == ':') {
            if (compressed) return 0;
            compressed = true;
            j += 2;
            end = j;
        } else if (j + 1 < lim && p[j] == ':' && is_hex(p[j + 1])) {
            j++;
        } else {
            break;
        }
    }
    if (compressed ? groups > 7 : groups != 8) return 0;
    if (explicit_groups < 2 || !digit) return 0;
    return right_ok(t, end) ? end - i : 0;
}

// ---- IBAN ---------------------------------------------------------------------------

static const struct {
    char cc[3];
    uint8_t len;
} IBAN_LEN[] = {
    {"AD", 24}, {"AE", 23}, {"AT", 20}, {"BE", 16}, {"BG", 22}, {"BH", 22}, {"BR", 29}, {"CH", 21},
    {"CY", 28}, {"CZ", 24}, {"DE", 22}, {"DK", 18}, {"EE", 20}, {"ES", 24}, {"FI", 18}, {"FO", 18},
    {"FR", 27}, {"GB", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27}, {"HR", 21}, {"HU", 28}, {"IE", 22},
    {"IL", 23}, {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30}, {"LB", 28}, {"LI", 21}, {"LT", 20},
    {"LU", 20}, {"LV", 21}, {"MC", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18}, {"NO", 15}, {"PK", 24},
    {"PL", 28}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"SA", 24}, {"SE", 24}, {"SI", 19}, {"SK", 24},
    {"SM", 27}, {"TR", 26}, {"UA", 29},
};

static int iban_length(uint8_t a, uint8_t b) {
    for (size_t k = 0; k < sizeof IBAN_LEN / sizeof IBAN_LEN[0]; k++)
        if (IBAN_LEN[k].cc[0] == a && IBAN_LEN[k].cc[1] == b) return IBAN_LEN[k].len;
    return 0;
}

static bool iban_mod97_ok(const uint8_t *c, int n) {
    unsigned r = 0;
    for (int k = 0; k < n; k++) {
        uint8_t ch = c[(k + 4) % n]; // the first four characters move to the end
        if (is_digit(ch)) {
            r = (r * 10 + (unsigned)(ch - '0')) % 97;
        } else {
            r = (r * 100 + (unsigned)(ch - 'A' + 10)) % 97;
        }
    }
    return r == 1;
}

static size_t match_iban(const text *t, size_t i, size_t lim) {
    const uint8_t *p = t->p;
    if (lim - i < 15 || !is_upper(p[i + 1]) || !is_digit(p[i + 2]) || !is_digit(p[i + 3])) return 0;
    int want = iban_length(p[i], p[i + 1]);
    if (!want) return 0;
    uint8_t c[34];
    int n = 0;
    size_t j = i;
    bool spaced = lim - i > 4 && p[i + 4] == ' ';
    while (n < want) {
        if (spaced && n > 0 && n % 4 == 0) {
            if (j >= lim || p[j] != ' ') return 0;
            j++;
        }
        if (j >= lim || !(is_upper(p[j]) || is_digit(p[j]))) return 0;
        c[n++] = p[j++];
    }
    if (!right_ok(t, j) || !iban_mod97_ok(c, n)) return 0;
    return j - i;
}

// ---- phone --------------------------------------------------------------------------

// A phone-number shape for the first ng groups (lengths glen, digit starts gpos).
static bool phone_shape_ok(const uint8_t *p, bool plus, const int *glen, const size_t *gpos, int ng,
                           int paren_at, uint8_t sep) {
    int total = 0;
    for (int g = 0; g < ng; g++)
        total += glen[g];
    uint8_t first = p[gpos[0]];
    if (paren_at >= ng) paren_at = -1;
    if (plus) return total >= 8 && total <= 15 && first != '0';
    if (first == '0' && ng >= 2 && glen[0] >= 3 && p[gpos[0] + 1] == '0')
        return total - 2 >= 8 && total - 2 <= 15; // 00 international prefix
    if (first == '0') {
        bool ok = ng >= 2 && total >= 9 && total <= 11;
        for (int g = 0; g < ng; g++)
            ok = ok && glen[g] >= 2 && glen[g] <= 8;
        return ok;
    }
    int g0 = ng == 4 && glen[0] == 1 && first == '1' && paren_at != 0;
    if (ng - g0 == 3 && glen[g0] == 3 && glen[g0 + 1] == 3 && glen[g0 + 2] == 4 &&
        (paren_at < 0 || paren_at == g0))
        return p[gpos[g0]] >= '2' && p[gpos[g0 + 1]] >= '2'; // NANP: NPA and NXX from 2-9
    return ng == 2 && glen[0] == 3 && glen[1] == 4 && sep == '-' && paren_at < 0 &&
           first >= '2'; // seven-digit local number
}

// Digit groups with one consistent separator (a parenthesised area code aside); the
// longest prefix of whole groups with a phone shape wins.
static size_t match_phone(const text *t, size_t i, size_t lim) {
    const uint8_t *p = t->p;
    size_t j = i;
    bool plus = p[i] == '+';
    if (plus) j++;
    int glen[16], ng = 0, paren_at = -1;
    size_t gpos[16], gend[16];
    uint8_t gsep[16];
    uint8_t sep = 0; // gsep[g]: the separator within groups 0..g
    while (ng < 16) {
        size_t gs = j;
        bool par = j < lim && p[j] == '(';
        if (par) {
            if (paren_at >= 0 || ng > 1 || (plus && ng == 0)) break;
            j++;
        }
        size_t ds = j;
        while (j < lim && is_digit(p[j]) && j - ds < 16)
            j++;
        size_t k = j - ds;
        if (k == 0 || k > 15 || (par && (j >= lim || p[j] != ')'))) {
            j = gs;
            break;
        }
        if (par) {
            j++;
            paren_at = ng;
        }
        gpos[ng] = ds;
        gend[ng] = j;
        gsep[ng] = sep;
        glen[ng++] = (int)k;
        if (par) {
            if (j + 1 < lim && (p[j] == ' ' || p[j] == '-') && is_digit(p[j + 1])) j++;
            if (j < lim && is_digit(p[j])) continue;
            break;
        }
        if (j + 1 < lim && (p[j] == ' ' || p[j] == '-' || p[j] == '.')) {
            if (p[j + 1] == '(' && p[j] == ' ') {
                j++;
                continue;
            }
            if (is_digit(p[j + 1]) && (!sep || sep == p[j])) {
                sep = p[j++];
                continue;
            }
        }
        break;
    }
    for (int g = ng; g > 0; g--) {
        if (phone_shape_ok(p, plus, glen, gpos, g, paren_at, gsep[g - 1]) &&
            right_ok(t, gend[g - 1]))
            return gend[g - 1] - i;
    }
    return 0;
}

// ---- scanning -----------------------------------------------------------------------

typedef struct scanner {
    text t;
    const anneal_pii_config *cfg;
    size_t pos;       // everything before is decided
    size_t at_search; // next byte to look for '@' from
    bool have_email;
    size_t es, ee; // the next e-mail, when have_email
} scanner;

// The first non-email match in [from, lim).
static bool scan_gap(scanner *s, size_t from, size_t lim, anneal_pii_match *m) {
    const text *t = &s->t;
    const uint8_t *p = t->p;
    const bool *on = s->cfg->enabled;
    size_t i = from;
    while (i < lim) {
        uint8_t c = p[i];
        if (!is_alnum(c)) {
            if ((c == '+' || c == '(') && on[ANNEAL_PII_PHONE] && left_ok_strict(t, i)) {
                size_t n = match_phone(t, i, lim);
                if (n) {
                    *m = (anneal_pii_match){ANNEAL_PII_PHONE, i, n};
                    return true;
                }
            }
            i++;
            continue;
        }
        if (left_ok(t, i)) {
            size_t n = 0;
            anneal_pii_kind k = ANNEAL_PII_COUNT;
            if (is_digit(c)) {
                if (on[ANNEAL_PII_CARD] && (n = match_card(t, i, lim)))
                    k = ANNEAL_PII_CARD;
                else if (on[ANNEAL_PII_SSN] && (n = match_ssn(t, i, lim)))
                    k = ANNEAL_PII_SSN;
                else if (on[ANNEAL_PII_IPV4] && (n = match_ipv4(t, i, lim)))
                    k = ANNEAL_PII_IPV4;
                else if (on[ANNEAL_PII_IPV6] && (n = match_ipv6(t, i, lim)))
                    k = ANNEAL_PII_IPV6;
                else if (on[ANNEAL_PII_PHONE] && (n = match_phone(t, i, lim)))
                    k = ANNEAL_PII_PHONE;
            } else {
                if (is_upper(c) && on[ANNEAL_PII_IBAN] && (n = match_iban(t, i, lim)))
                    k = ANNEAL_PII_IBAN;
                else if (is_hex(c) && on[ANNEAL_PII_IPV6] && (n = match_ipv6(t, i, lim)))
                    k = ANNEAL_PII_IPV6;
            }
            if (n) {
                *m = (anneal_pii_match){k, i, n};
                return true;
            }
        }
        // No match starts inside a word: skip it.
        i++;
        while (i < lim && is_alnum(p[i]))
            i++;
    }
    return false;
}

static bool scan_next(scanner *s, anneal_pii_match *m) {
    const text *t = &s->t;
    if (s->cfg->enabled[ANNEAL_PII_EMAIL]) {
        while (!s->have_email && s->at_search < t->n) {
            const uint8_t *a = memchr(t->p + s->at_search, '@', t->n - s->at_search);
            if (!a) {
                s->at_search = t->n;
                break;
            }
            size_t at = (size_t)(a - t->p);
            if (match_email(t, s->pos, at, &s->es, &s->ee)) {
                s->have_email = true;
                s->at_search = s->ee;
            } else {
                s->at_search = at + 1;
            }
        }
    }
    size_t lim = s->have_email ? s->es : t->n;
    s->t.open_at = s->have_email ? s->es : SIZE_MAX;
    if (s->pos < lim && scan_gap(s, s->pos, lim, m)) {
        s->pos = m->off + m->len;
        return true;
    }
    if (s->have_email) {
        *m = (anneal_pii_match){ANNEAL_PII_EMAIL, s->es, s->ee - s->es};
        s->pos = s->ee;
        s->t.close_at = s->ee - 1;
        s->have_email = false;
        return true;
    }
    s->pos = t->n;
    return false;
}

size_t anneal_pii_find(const anneal_pii_config *cfg, const char *text_, size_t len,
                       anneal_pii_match *out, size_t cap) {
    anneal_pii_config def;
    if (!cfg) {
        def = anneal_pii_config_default();
        cfg = &def;
    }
    scanner s = {
        {(const uint8_t *)text_, text_ ? len : 0, SIZE_MAX, SIZE_MAX}, cfg, 0, 0, false, 0, 0};
    size_t n = 0;
    anneal_pii_match m;
    while (scan_next(&s, &m)) {
        if (n < cap) out[n] = m;
        n++;
    }
    return n;
}

static bool reserve(char **out, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 256;
    while (nc < need)
        nc = nc > SIZE_MAX / 2 ? need : nc * 2;
    char *q = anneal_realloc(*out, nc);
    if (!q) return false;
    *out = q;
    *cap = nc;
    return true;
}

anneal_status anneal_pii_redact(const anneal_pii_config *cfg, const char *text_, size_t len,
                                char **out, size_t *out_len, size_t *out_cap,
                                size_t counts[ANNEAL_PII_COUNT], anneal_err *err) {
    if (!out || !out_len || !out_cap || (!text_ && len))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG, "pii_redact: NULL argument");
    anneal_pii_config def;
    if (!cfg) {
        def = anneal_pii_config_default();
        cfg = &def;
    }
    size_t tok_len[ANNEAL_PII_COUNT];
    const char *tok[ANNEAL_PII_COUNT];
    for (int k = 0; k < ANNEAL_PII_COUNT; k++) {
        tok[k] = cfg->replacement[k] ? cfg->replacement[k] : DEFAULT_TOKENS[k];
        tok_len[k] = strlen(tok[k]);
    }
    scanner s = {{(const uint8_t *)text_, len, SIZE_MAX, SIZE_MAX}, cfg, 0, 0, false, 0, 0};
    size_t o = 0, copied = 0;
    anneal_pii_match m;
    for (;;) {
        bool more = scan_next(&s, &m);
        size_t upto = more ? m.off : len;
        size_t add = upto - copied + (more ? tok_len[m.kind] : 0);
        if (add > SIZE_MAX - o - 1 || !reserve(out, out_cap, o + add + 1))
            return anneal_err_set(err, ANNEAL_ERR_NOMEM, "pii_redact: output of %zu bytes",
                                  o + add + 1);
        if (upto > copied) memcpy(*out + o, text_ + copied, upto - copied);
        o += upto - copied;
        if (!more) break;
        memcpy(*out + o, tok[m.kind], tok_len[m.kind]);
        o += tok_len[m.kind];
        copied = m.off + m.len;
        if (counts) counts[m.kind]++;
    }
    (*out)[o] = '\0';
    *out_len = o;
    return ANNEAL_OK;
}
