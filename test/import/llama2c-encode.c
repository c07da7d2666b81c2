/*
 * Runs llama2.c's run.c tokenizer on given texts: builds it from tokenizer.bin as run.c does
 * and prints, for each text, the ids of run.c's encode() (no BOS, no EOS) on one line. Texts
 * come on stdin, each as a little-endian uint32 length and its bytes. It includes run.c
 * unmodified from the peer directory (-I<peer> -DTESTING), as bench/llama2c-driver.c does.
 *
 * usage: llama2c-encode tokenizer.bin <vocab size> < texts
 */
#define TESTING
#include <stdint.h>
#include "run.c"

int main(int argc, char *argv[]) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s tokenizer.bin <vocab size> < texts\n", argv[0]);
        return 2;
    }
    Tokenizer tokenizer;
    build_tokenizer(&tokenizer, argv[1], atoi(argv[2]));
    uint32_t length;
    while (fread(&length, sizeof(length), 1, stdin) == 1) {
        char *text = malloc(length + 1);
        if (length > 0 && fread(text, 1, length, stdin) != length) {
            fprintf(stderr, "a text is cut short\n");
            return 1;
        }
        text[length] = '\0';
        int *tokens = malloc((length + 3) * sizeof(int));
        int n = 0;
        encode(&tokenizer, text, 0, 0, tokens, &n);
        for (int i = 0; i < n; i++) printf("%s%d", i > 0 ? " " : "", tokens[i]);
        printf("\n");
        free(tokens);
        free(text);
    }
    free_tokenizer(&tokenizer);
    return 0;
}
