/* SPDX-License-Identifier: MIT */
/*
 * fuzz_inspect: the input is a stream given to ferry_inspect(), once with the
 * defaults and once strict with a summary and indentation.
 *
 * Checks, besides the sanitizers: the JSON it returns parses, on success and
 * on failure; a failure carries an "error" member and a message; a success
 * has no message.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include <ferry/inspect.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

static void run(const uint8_t *data, size_t size, const struct ferry_inspect_opts *opts)
{
	char *json = NULL, *err = NULL;
	int ret = ferry_inspect(data, size, opts, &json, &err);

	if (ret == -ENOMEM)
		goto out;
	CHECK(json != NULL);
	/* A name from the stream may hold NUL bytes: "\u0000" is valid JSON. */
	json_t *j = json_loads(json, JSON_ALLOW_NUL, NULL);
	CHECK(j != NULL);
	if (ret < 0) {
		CHECK(err != NULL && err[0] != '\0');
		CHECK(json_object_get(j, "error") != NULL);
	} else {
		CHECK(ret == 0 && err == NULL);
	}
	json_decref(j);
out:
	free(json);
	free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct ferry_inspect_opts strict = {.strict = true, .summary = true, .indent = 2};

	run(data, size, NULL);
	run(data, size, &strict);
	return 0;
}
