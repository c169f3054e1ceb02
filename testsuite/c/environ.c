/* Exercises the environment: prints every entry of environ, in order. */
#include <stdio.h>

extern char **environ;

int main(void)
{
    for (char **e = environ; *e != NULL; e++)
        printf("env %s\n", *e);
    return 0;
}
