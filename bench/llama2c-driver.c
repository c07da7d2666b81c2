/*
 * Runs llama2.c's run.c on given token ids instead of text: feeds the prompt ids one at a time
 * through run.c's forward(), as its generate() does, then picks N tokens greedily with its
 * sample_argmax(), and prints the ids and the two phases' wall times as one JSON line. One
 * untimed forward at position 0 first pages the mapped weights in (the prompt's first step
 * overwrites its cache entry). It includes run.c unmodified from the peer directory
 * (-I<peer> -DTESTING, as llama2.c's own test_all.c does), so the arithmetic and its speed
 * are run.c's.
 *
 * usage: llama2c-driver model.bin <new tokens> <id> [<id> ...]
 */
#define TESTING
#include "run.c"

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char *argv[]) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s model.bin <new tokens> <id> [<id> ...]\n", argv[0]);
        return 2;
    }
    Transformer transformer;
    build_transformer(&transformer, argv[1]);
    int vocab = transformer.config.vocab_size;
    int steps = atoi(argv[2]);
    int prompt = argc - 3;
    if (steps < 1 || prompt + steps - 1 > transformer.config.seq_len) {
        fprintf(stderr, "need 1 to %d new tokens after %d prompt ids\n", transformer.config.seq_len - prompt + 1, prompt);
        return 2;
    }
    int *out = malloc(steps * sizeof(int));
    float *logits = forward(&transformer, 0, 0);
    double t0 = seconds();
    for (int pos = 0; pos < prompt; pos++) {
        int id = atoi(argv[3 + pos]);
        if (id < 0 || id >= vocab) {
            fprintf(stderr, "prompt id %d is outside the vocabulary of %d\n", id, vocab);
            return 2;
        }
        logits = forward(&transformer, id, pos);
    }
    double t1 = seconds();
    for (int i = 0; i < steps; i++) {
        out[i] = sample_argmax(logits, vocab);
        if (i + 1 < steps) logits = forward(&transformer, out[i], prompt + i);
    }
    double t2 = seconds();
    printf("{\"tokens\":[");
    for (int i = 0; i < steps; i++) printf("%s%d", i > 0 ? "," : "", out[i]);
    printf("],\"promptSeconds\":%.9f,\"decodeSeconds\":%.9f}\n", t1 - t0, t2 - t1);
    free(out);
    free_transformer(&transformer);
    return 0;
}
