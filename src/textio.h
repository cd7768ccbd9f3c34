/* Line-by-line reading of text files, plain or xz-compressed (by the .xz
 * suffix), or standard input ("-"), keeping the line number for errors. */
#ifndef BERTRAIN_TEXTIO_H
#define BERTRAIN_TEXTIO_H

#include <stddef.h>
#include <stdio.h>

typedef struct LineReader LineReader;

/* Opens path ("-" for stdin); dies naming the file when it cannot. */
LineReader *lines_open(const char *path);
/* Returns the next line without its "\n" (and without a trailing "\r"),
 * NUL-terminated, valid until the next call; *len gets its length.
 * Returns NULL at end of file; dies naming the file on a read error. */
char *lines_next(LineReader *r, size_t *len);
/* 1-based number of the line last returned. */
long lines_number(const LineReader *r);
const char *lines_path(const LineReader *r);
void lines_close(LineReader *r);

/* Returns 1 when s[0..len) is valid UTF-8. */
int utf8_valid(const char *s, size_t len);
/* Dies with "FILE:LINE: invalid UTF-8" unless the line is valid. */
void require_utf8(const LineReader *r, const char *line, size_t len);

/* Path of dir/name if it exists, else dir/name.xz if that exists, else NULL
 * (caller frees). Lets data directories hold either form. */
char *find_data_file(const char *dir, const char *name);

#endif
