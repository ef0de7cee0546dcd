/* SPDX-License-Identifier: MIT */
#include <ferry/version.h>

unsigned ferry_version(void)
{
	return FERRY_VERSION_NUM;
}

const char *ferry_version_string(void)
{
	return FERRY_VERSION_STRING;
}
