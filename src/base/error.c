// Status names and the first-failure-wins error buffer.
#include "anneal/base.h"

#include <stdio.h>

const char *anneal_status_str(anneal_status s) {
    switch (s) {
    case ANNEAL_OK: return "ok";
    case ANNEAL_ERR_NOMEM: return "out of memory";
    case ANNEAL_ERR_IO: return "i/o error";
    case ANNEAL_ERR_FORMAT: return "format error";
    case ANNEAL_ERR_UNSUPPORTED: return "unsupported";
    case ANNEAL_ERR_INVALID_ARG: return "invalid argument";
    case ANNEAL_ERR_NOT_FOUND: return "not found";
    case ANNEAL_ERR_RANGE: return "out of range";
    case ANNEAL_ERR_LIMIT: return "limit reached";
    case ANNEAL_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

anneal_status anneal_err_vset(anneal_err *err, anneal_status s, const char *fmt, va_list ap) {
    if (err && err->status == ANNEAL_OK && s != ANNEAL_OK) {
        err->status = s;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return s;
}

anneal_status anneal_err_set(anneal_err *err, anneal_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    anneal_err_vset(err, s, fmt, ap);
    va_end(ap);
    return s;
}

void anneal_err_clear(anneal_err *err) {
    if (!err) return;
    err->status = ANNEAL_OK;
    err->msg[0] = '\0';
}

const char *anneal_err_msg(const anneal_err *err) {
    if (!err) return "";
    if (err->msg[0]) return err->msg;
    return anneal_status_str(err->status);
}
