/*
 * Copyright (C) ngx_umlo authors
 *
 * The body of POST umlo_sync: see ngx_umlo_syncbody.h.
 */


#include "ngx_umlo_syncbody.h"
#include "ngx_umlo_utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>


static int ngx_umlo_syncbody_bad(ngx_umlo_syncbody_err_t *err,
    const char *code, const char *fmt, ...);


int
ngx_umlo_syncbody_parse(const char *p, size_t len, size_t selective_max,
    json_t **users, int *activity, ngx_umlo_syncbody_err_t *err)
{
    size_t        i, n, idlen;
    json_t       *body, *value, *list, *out;
    const char   *key, *id;
    json_error_t  jerr;

    *users = NULL;
    *activity = 0;
    memset(err, 0, sizeof(ngx_umlo_syncbody_err_t));

    while (len && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
        p++;
        len--;
    }

    if (len == 0) {
        return 0;
    }

    body = json_loadb(p, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                      &jerr);
    if (body == NULL) {
        return ngx_umlo_syncbody_bad(err, "invalid_json",
                                     "the body is not valid JSON: %s at "
                                     "character %d", jerr.text,
                                     jerr.position);
    }

    if (!json_is_object(body)) {
        json_decref(body);
        return ngx_umlo_syncbody_bad(err, "invalid_body",
                                     "the body must be a JSON object such "
                                     "as {\"scope\":\"full\"} or "
                                     "{\"users\":[\"<accountId>\"]}");
    }

    list = NULL;

    json_object_foreach(body, key, value) {

        if (strcmp(key, "scope") == 0) {
            if (!json_is_string(value)
                || strcmp(json_string_value(value), "full") != 0)
            {
                json_decref(body);
                return ngx_umlo_syncbody_bad(err, "invalid_scope",
                                             "\"scope\" must be \"full\"; "
                                             "for chosen users send "
                                             "\"users\" instead");
            }

            continue;
        }

        if (strcmp(key, "users") == 0) {
            list = value;
            continue;
        }

        if (strcmp(key, "activity") == 0) {
            if (!json_is_boolean(value)) {
                json_decref(body);
                return ngx_umlo_syncbody_bad(err, "invalid_activity",
                                             "\"activity\" must be true or "
                                             "false");
            }

            *activity = json_is_true(value);
            continue;
        }

        /* a long key is cut, on a UTF-8 character boundary */
        n = strlen(key);

        if (n > 200) {
            n = 200;
            while (n > 0 && ((unsigned char) key[n] & 0xc0) == 0x80) {
                n--;
            }
        }

        ngx_umlo_syncbody_bad(err, "unknown_field",
                              "unknown field \"%.*s\": a sync takes "
                              "\"scope\", \"users\" or \"activity\"",
                              (int) n, key);
        json_decref(body);
        return -1;
    }

    if (*activity) {
        n = (list != NULL || json_object_get(body, "scope") != NULL);
        json_decref(body);

        if (n) {
            *activity = 0;
            return ngx_umlo_syncbody_bad(err, "invalid_body",
                                         "\"activity\": true asks for an "
                                         "activity refresh alone: leave "
                                         "out \"scope\" and \"users\"");
        }

        return 0;
    }

    if (list != NULL && json_object_get(body, "scope") != NULL) {
        json_decref(body);
        return ngx_umlo_syncbody_bad(err, "invalid_body",
                                     "\"scope\" and \"users\" exclude each "
                                     "other");
    }

    if (list == NULL) {
        json_decref(body);
        return 0;
    }

    n = json_array_size(list);

    if (!json_is_array(list) || n == 0 || n > selective_max) {
        json_decref(body);
        return ngx_umlo_syncbody_bad(err, "invalid_users",
                                     "\"users\" must be an array of 1 to "
                                     "%zu account ids "
                                     "(umlo_sync_selective_max)",
                                     selective_max);
    }

    out = json_array();
    if (out == NULL) {
        json_decref(body);
        return -1;
    }

    json_array_foreach(list, i, value) {
        id = json_string_value(value);
        idlen = id ? strlen(id) : 0;

        if (idlen == 0 || idlen > NGX_UMLO_ACCOUNT_ID_MAX
            || strspn(id, "abcdefghijklmnopqrstuvwxyz"
                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.")
               != idlen)
        {
            json_decref(out);
            json_decref(body);
            return ngx_umlo_syncbody_bad(err, "invalid_users",
                                         "\"users\"[%zu] is not an account "
                                         "id", i);
        }

        if (json_array_append(out, value) != 0) {
            json_decref(out);
            json_decref(body);
            return -1;
        }
    }

    json_decref(body);
    *users = out;

    return 0;
}


static int
ngx_umlo_syncbody_bad(ngx_umlo_syncbody_err_t *err, const char *code,
    const char *fmt, ...)
{
    va_list  args;

    err->status = 400;
    err->code = code;

    va_start(args, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, args);
    va_end(args);

    /*
     * The message goes into a JSON answer: it must be valid UTF-8 even
     * when cut short, or when jansson's "near '...'" ends inside a
     * character (an escape such as "\<2-byte char>" saves one byte of it).
     */
    ngx_umlo_utf8_clean(err->message, 0);

    return -1;
}

