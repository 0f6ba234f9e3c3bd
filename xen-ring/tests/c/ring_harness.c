/*
 * One end of a shared ring driven by Xen's own io/ring.h macros, for the
 * differential test in ../ring_against_c.rs.
 *
 * Each invocation performs one step on a ring page image kept in a file and
 * exits, so the Rust end (which may not hold raw pointers) can take the
 * next turn on the same bytes. The private ring indices travel on the
 * command line and come back on stdout:
 *
 *   ring_harness TYPE PAGES IMAGE ROLE A B COMMAND [ARG]
 *
 *   TYPE     a (12-byte request, 4-byte response), b (112/16, with a
 *            uint64_t), c (8/24)
 *   ROLE     front (A = req_prod_pvt, B = rsp_cons) or
 *            back  (A = rsp_prod_pvt, B = req_cons)
 *   COMMAND  init START   front: XEN_FRONT_RING_INIT, then every index at START
 *                         back:  BACK_RING_ATTACH at START
 *            produce N    queue up to N requests (front) or responses (back)
 *            push         RING_PUSH_*_AND_CHECK_NOTIFY
 *            consume N    copy out up to N requests or responses
 *            final        RING_FINAL_CHECK_FOR_*
 *            overflow P   RING_REQUEST_PROD_OVERFLOW (back) or
 *                         RING_RESPONSE_PROD_OVERFLOW (front) of producer P
 *
 * Output lines: "size N", "state A B", "notify 0|1", "work 0|1", "overflow 0|1",
 * "got INDEX HEX" for each message copied out.
 *
 * Message contents are a function of (kind, free-running ring index) that
 * the Rust side computes too, so neither end needs the other's history.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define xen_mb()  __sync_synchronize()
#define xen_rmb() __asm__ __volatile__("" ::: "memory")
#define xen_wmb() __asm__ __volatile__("" ::: "memory")
#define __XEN_INTERFACE_VERSION__ 0x00040e00
#include <xen/io/ring.h>

struct a_req { uint32_t w[3]; };
struct a_rsp { uint32_t w; };
DEFINE_RING_TYPES(a, struct a_req, struct a_rsp);

/*
 * Shaped like blkif's x86_64 request and response, with the padding spelled
 * out: a struct copy need not preserve padding bytes, and every byte is
 * compared.
 */
struct b_req { uint8_t operation; uint8_t n; uint16_t handle; uint32_t pad; uint64_t id; uint8_t rest[96]; };
struct b_rsp { uint64_t id; uint8_t operation; uint8_t pad; int16_t status; uint32_t pad2; };
DEFINE_RING_TYPES(b, struct b_req, struct b_rsp);

struct c_req { uint32_t w[2]; };
struct c_rsp { uint8_t bytes[24]; };
DEFINE_RING_TYPES(c, struct c_req, struct c_rsp);

enum { KIND_REQUEST = 1, KIND_RESPONSE = 2 };

/* Must match `message_byte` in ring_against_c.rs. */
static uint8_t message_byte(int kind, RING_IDX index, size_t position)
{
    uint32_t mixed = index * 2654435761u + (uint32_t)position * 40503u + (uint32_t)kind * 977u;
    return (uint8_t)(mixed >> 13);
}

static void fill(void *message, size_t size, int kind, RING_IDX index)
{
    uint8_t *bytes = message;
    for (size_t position = 0; position < size; position++)
        bytes[position] = message_byte(kind, index, position);
}

static void print_got(RING_IDX index, const void *message, size_t size)
{
    const uint8_t *bytes = message;
    printf("got %u ", index);
    for (size_t position = 0; position < size; position++)
        printf("%02x", bytes[position]);
    printf("\n");
}

static void fail(const char *what)
{
    fprintf(stderr, "ring_harness: %s\n", what);
    exit(2);
}

/*
 * The steps, written once for every ring type: the macros only need the
 * names of the ring structures and of the request/response types.
 */
#define DEFINE_STEPS(tag)                                                      \
static void tag##_step(void *page, size_t bytes, int front, RING_IDX a,        \
                       RING_IDX b, const char *command, unsigned long arg)     \
{                                                                              \
    struct tag##_sring *sring = page;                                          \
    struct tag##_front_ring fr = { 0 };                                        \
    struct tag##_back_ring br = { 0 };                                         \
    int flag;                                                                  \
    if (strcmp(command, "init") == 0) {                                        \
        RING_IDX start = (RING_IDX)arg;                                        \
        if (front) {                                                           \
            XEN_FRONT_RING_INIT(&fr, sring, bytes);                            \
            sring->req_prod = sring->rsp_prod = start;                         \
            sring->req_event = sring->rsp_event = start + 1;                   \
            FRONT_RING_ATTACH(&fr, sring, start, bytes);                       \
        } else {                                                               \
            BACK_RING_ATTACH(&br, sring, start, bytes);                        \
        }                                                                      \
    } else if (front) {                                                        \
        FRONT_RING_ATTACH(&fr, sring, 0, bytes);                               \
        fr.req_prod_pvt = a;                                                   \
        fr.rsp_cons = b;                                                       \
    } else {                                                                   \
        BACK_RING_ATTACH(&br, sring, 0, bytes);                                \
        br.rsp_prod_pvt = a;                                                   \
        br.req_cons = b;                                                       \
    }                                                                          \
    if (strcmp(command, "init") == 0) {                                        \
    } else if (strcmp(command, "produce") == 0 && front) {                     \
        for (unsigned long i = 0; i < arg && !RING_FULL(&fr); i++) {           \
            struct tag##_req *req = RING_GET_REQUEST(&fr, fr.req_prod_pvt);    \
            fill(req, sizeof(*req), KIND_REQUEST, fr.req_prod_pvt);            \
            fr.req_prod_pvt++;                                                 \
        }                                                                      \
    } else if (strcmp(command, "produce") == 0) {                              \
        for (unsigned long i = 0; i < arg && br.rsp_prod_pvt != br.req_cons;   \
             i++) {                                                            \
            struct tag##_rsp *rsp = RING_GET_RESPONSE(&br, br.rsp_prod_pvt);   \
            fill(rsp, sizeof(*rsp), KIND_RESPONSE, br.rsp_prod_pvt);           \
            br.rsp_prod_pvt++;                                                 \
        }                                                                      \
    } else if (strcmp(command, "push") == 0 && front) {                        \
        RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&fr, flag);                        \
        printf("notify %d\n", flag ? 1 : 0);                                   \
    } else if (strcmp(command, "push") == 0) {                                 \
        RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&br, flag);                       \
        printf("notify %d\n", flag ? 1 : 0);                                   \
    } else if (strcmp(command, "consume") == 0 && front) {                     \
        RING_IDX rp = sring->rsp_prod;                                         \
        xen_rmb();                                                             \
        for (unsigned long i = 0; i < arg && fr.rsp_cons != rp; i++) {         \
            struct tag##_rsp rsp;                                              \
            RING_COPY_RESPONSE(&fr, fr.rsp_cons, &rsp);                        \
            print_got(fr.rsp_cons, &rsp, sizeof(rsp));                         \
            fr.rsp_cons++;                                                     \
        }                                                                      \
    } else if (strcmp(command, "consume") == 0) {                              \
        RING_IDX rp = sring->req_prod;                                         \
        xen_rmb();                                                             \
        for (unsigned long i = 0; i < arg && br.req_cons != rp; i++) {         \
            struct tag##_req req;                                              \
            if (RING_REQUEST_CONS_OVERFLOW(&br, br.req_cons))                  \
                break;                                                         \
            RING_COPY_REQUEST(&br, br.req_cons, &req);                         \
            print_got(br.req_cons, &req, sizeof(req));                         \
            br.req_cons++;                                                     \
        }                                                                      \
    } else if (strcmp(command, "final") == 0 && front) {                       \
        RING_FINAL_CHECK_FOR_RESPONSES(&fr, flag);                             \
        printf("work %d\n", flag ? 1 : 0);                                     \
    } else if (strcmp(command, "final") == 0) {                                \
        RING_FINAL_CHECK_FOR_REQUESTS(&br, flag);                              \
        printf("work %d\n", flag ? 1 : 0);                                     \
    } else if (strcmp(command, "overflow") == 0 && front) {                    \
        printf("overflow %d\n", RING_RESPONSE_PROD_OVERFLOW(&fr, (RING_IDX)arg) \
                                    ? 1 : 0);                                  \
    } else if (strcmp(command, "overflow") == 0) {                             \
        printf("overflow %d\n", RING_REQUEST_PROD_OVERFLOW(&br, (RING_IDX)arg)  \
                                    ? 1 : 0);                                  \
    } else {                                                                   \
        fail("unknown command");                                               \
    }                                                                          \
    if (front) {                                                               \
        printf("size %u\n", RING_SIZE(&fr));                                   \
        printf("state %u %u\n", fr.req_prod_pvt, fr.rsp_cons);                 \
    } else {                                                                   \
        printf("size %u\n", RING_SIZE(&br));                                   \
        printf("state %u %u\n", br.rsp_prod_pvt, br.req_cons);                 \
    }                                                                          \
}

DEFINE_STEPS(a)
DEFINE_STEPS(b)
DEFINE_STEPS(c)

int main(int argc, char **argv)
{
    if (argc < 8 || argc > 9)
        fail("usage: TYPE PAGES IMAGE ROLE A B COMMAND [ARG]");
    size_t bytes = strtoul(argv[2], NULL, 0) * 4096;
    const char *image = argv[3];
    int front = strcmp(argv[4], "front") == 0;
    if (!front && strcmp(argv[4], "back") != 0)
        fail("ROLE must be front or back");
    RING_IDX a = (RING_IDX)strtoul(argv[5], NULL, 0);
    RING_IDX b = (RING_IDX)strtoul(argv[6], NULL, 0);
    unsigned long arg = argc == 9 ? strtoul(argv[8], NULL, 0) : 0;

    void *page = aligned_alloc(4096, bytes);
    if (page == NULL)
        fail("out of memory");
    FILE *file = fopen(image, "rb");
    if (file == NULL || fread(page, 1, bytes, file) != bytes)
        fail("cannot read the image");
    fclose(file);

    switch (argv[1][0]) {
    case 'a': a_step(page, bytes, front, a, b, argv[7], arg); break;
    case 'b': b_step(page, bytes, front, a, b, argv[7], arg); break;
    case 'c': c_step(page, bytes, front, a, b, argv[7], arg); break;
    default: fail("TYPE must be a, b or c");
    }

    file = fopen(image, "wb");
    if (file == NULL || fwrite(page, 1, bytes, file) != bytes || fclose(file) != 0)
        fail("cannot write the image");
    free(page);
    return 0;
}
