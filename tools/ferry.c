/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>

#include <ferry/version.h>

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("ferry %s\n", ferry_version_string());
		return 0;
	}
	fprintf(stderr, "usage: ferry --version\n");
	return 2;
}
