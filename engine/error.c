/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include <ferry/error.h>

const char *ferry_strerror(int err)
{
	switch (err) {
#define FERRY_ERR_MSG_(code, name, msg)                                                            \
	case code:                                                                                 \
		return msg;
		FERRY_ERRORS(FERRY_ERR_MSG_)
#undef FERRY_ERR_MSG_
	default:
		break;
	}
	if (err < 0 && err > FERRY_ERR_BASE) {
		/* strerrordesc_np is thread-safe and never formats "Unknown error %d". */
		const char *s = strerrordesc_np(-err);
		if (s)
			return s;
	}
	return "unknown error";
}

const char *ferry_err_name(int err)
{
	switch (err) {
#define FERRY_ERR_NAME_(code, name, msg)                                                           \
	case code:                                                                                 \
		return "E" #name;
		FERRY_ERRORS(FERRY_ERR_NAME_)
#undef FERRY_ERR_NAME_
	default:
		break;
	}
	if (err < 0 && err > FERRY_ERR_BASE) {
		const char *s = strerrorname_np(-err);
		if (s)
			return s;
	}
	return "EUNKNOWN";
}
