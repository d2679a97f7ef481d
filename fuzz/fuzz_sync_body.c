/*
 * Copyright (C) ngx_umlo authors
 *
 * libFuzzer harness: the body of POST umlo_sync
 * (ngx_umlo_syncbody_parse()).  Besides not crashing, a refusal must
 * carry a code and a message that is valid UTF-8 (it goes into the JSON
 * error), and an accepted selective body only account ids.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_umlo_syncbody.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                    i;
    json_t                   *users, *v, *msg;
    const char               *id;
    ngx_umlo_syncbody_err_t   err;

    if (ngx_umlo_syncbody_parse((const char *) data, size, 20, &users, &err)
        != 0)
    {
        if (err.status != 400 || err.code == NULL) {
            abort();
        }

        msg = json_string(err.message);
        if (msg == NULL) {
            abort();
        }

        json_decref(msg);
        return 0;
    }

    if (users != NULL) {
        if (json_array_size(users) == 0 || json_array_size(users) > 20) {
            abort();
        }

        json_array_foreach(users, i, v) {
            id = json_string_value(v);
            if (id == NULL || strlen(id) == 0
                || strlen(id) > NGX_UMLO_ACCOUNT_ID_MAX
                || strpbrk(id, " /{}\r\n\"\\") != NULL)
            {
                abort();
            }
        }

        json_decref(users);
    }

    return 0;
}
