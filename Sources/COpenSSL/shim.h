#ifndef TGSESS_COPENSSL_SHIM_H
#define TGSESS_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/err.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* A PEM password callback that refuses: an encrypted private key fails to load instead of
   libcrypto prompting on the terminal (which it does when the callback is NULL). */
static inline int tgsess_refuse_password(char *buf, int size, int rwflag, void *userdata) {
  (void)buf; (void)size; (void)rwflag; (void)userdata;
  return -1;
}

/* PEM_read_bio_PrivateKey with the refusing callback. */
static inline EVP_PKEY *tgsess_read_private_key_pem(BIO *bio) {
  return PEM_read_bio_PrivateKey(bio, NULL, tgsess_refuse_password, NULL);
}
#endif
