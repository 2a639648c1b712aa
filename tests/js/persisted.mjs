// Automatic Persisted Queries against a live taxi server, as the real clients speak
// them: Apollo Client's persisted-query link and urql's persisted exchange, each over
// POST and over GET (hash only, what a CDN caches).
//
//   node persisted.mjs HTTP_URL
//
// Every request the clients make is recorded, so the protocol is checked, not just the
// answers: first a hash alone (PERSISTED_QUERY_NOT_FOUND), then hash + document, and
// from then on the hash alone. Exits 0 when all went as expected, 1 otherwise.

import { createHash, randomBytes } from "node:crypto";

import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { Client, fetchExchange } from "@urql/core";
import { persistedExchange } from "@urql/exchange-persisted";

const URL_ = `${(process.argv[2] || "http://127.0.0.1:8000").replace(/\/+$/, "")}/graphql`;
const sha256 = (text) => createHash("sha256").update(text).digest("hex");

// What each client sent: method, whether a document was in it, whether a hash was.
function recorder() {
  const sent = [];
  const fetcher = async (input, init = {}) => {
    const url = new URL(typeof input === "string" ? input : input.url);
    const method = init.method || "GET";
    let body = {};
    if (method === "GET") {
      for (const key of ["query", "extensions"]) {
        if (url.searchParams.has(key)) body[key] = url.searchParams.get(key);
      }
    } else {
      body = JSON.parse(init.body);
    }
    sent.push({ method, query: Boolean(body.query), hash: Boolean(body.extensions) });
    return fetch(input, init);
  };
  return { sent, fetcher };
}

function expect(what, actual, expected) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
  console.log(`ok  ${what}`);
}

// A fresh document per run: the server has never seen it.
const unique = () => `q${randomBytes(6).toString("hex")}`;

async function apollo(useGET) {
  const name = unique();
  const query = gql`query ${name} { __typename }`;
  const run = async () => {
    const { sent, fetcher } = recorder();
    const link = createPersistedQueryLink({ sha256, useGETForHashedQueries: useGET }).concat(
      new HttpLink({ uri: URL_, fetch: fetcher }),
    );
    const client = new ApolloClient({ link, cache: new InMemoryCache() });
    const { data } = await client.query({ query, fetchPolicy: "no-cache" });
    return { data, sent };
  };
  const first = await run();
  expect(`apollo ${useGET ? "GET" : "POST"}: data`, first.data, { __typename: "Query" });
  const m = useGET ? "GET" : "POST";
  expect(`apollo ${m}: hash, then hash + document`, first.sent, [
    { method: m, query: false, hash: true },
    { method: "POST", query: true, hash: true },
  ]);
  const second = await run(); // another client: the server knows the hash now
  expect(`apollo ${m}: registered, hash only`, second.sent, [
    { method: m, query: false, hash: true },
  ]);
  expect(`apollo ${m}: data again`, second.data, { __typename: "Query" });
}

async function urql(preferGet) {
  const name = unique();
  const query = `query ${name} { __typename }`;
  const run = async () => {
    const { sent, fetcher } = recorder();
    const client = new Client({
      url: URL_,
      fetch: fetcher,
      requestPolicy: "network-only",
      exchanges: [
        persistedExchange({
          preferGetForPersistedQueries: preferGet,
          generateHash: async (text) => sha256(text),
        }),
        fetchExchange,
      ],
    });
    const result = await client.query(query, {}).toPromise();
    if (result.error) throw result.error;
    return { data: result.data, sent };
  };
  const m = preferGet ? "GET" : "POST";
  const first = await run();
  expect(`urql ${m}: data`, first.data, { __typename: "Query" });
  expect(`urql ${m}: hash, then hash + document`, first.sent, [
    { method: m, query: false, hash: true },
    { method: m, query: true, hash: true },
  ]);
  const second = await run();
  expect(`urql ${m}: registered, hash only`, second.sent, [
    { method: m, query: false, hash: true },
  ]);
}

try {
  await apollo(false);
  await apollo(true);
  await urql(false);
  await urql(true);
  process.exit(0);
} catch (error) {
  console.error(`FAILED: ${error?.stack || error}`);
  process.exit(1);
}
