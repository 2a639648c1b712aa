// urql: queries and mutations over HTTP, subscriptions over graphql-ws.
import { Client, cacheExchange, fetchExchange, gql, subscriptionExchange } from "@urql/core";
import { createClient } from "graphql-ws";
import WebSocket from "ws"; // Node.js 20 only: browsers and Node.js 22 have a WebSocket

import { accessToken, logIn } from "./tokens.mjs";

const HTTP_URL = process.env.TAXI_URL ?? "http://127.0.0.1:8000/graphql";

const wsClient = createClient({
  url: HTTP_URL.replace(/^http/, "ws"),
  webSocketImpl: WebSocket,
  // Called on every (re)connection, so a reconnect after 4403 (token expired) sends a fresh one.
  connectionParams: async () => ({ Authorization: `Bearer ${await accessToken()}` }),
  on: { connected: () => console.log("connected") },
});
const client = new Client({
  url: HTTP_URL,
  // A fetch that adds the current token to every HTTP request.
  fetch: async (url, init) =>
    fetch(url, {
      ...init,
      headers: { ...init.headers, Authorization: `Bearer ${await accessToken()}` },
    }),
  exchanges: [
    cacheExchange,
    fetchExchange,
    subscriptionExchange({
      forwardSubscription: (request) => ({
        subscribe: (sink) => ({ unsubscribe: wsClient.subscribe(request, sink) }),
      }),
    }),
  ],
});

await logIn(process.env.TAXI_USERNAME, process.env.TAXI_PASSWORD);
const me = await client.query(gql`query Me { me { username group } }`, {}).toPromise();
console.log(`signed in as ${me.data.me.username}`);

const { unsubscribe } = client
  .subscription(gql`subscription Watch($id: ID!) { tripUpdated(id: $id) { id status } }`, {
    id: process.env.TAXI_TRIP,
  })
  .subscribe((result) => {
    if (result.error) {
      console.error(result.error);
      process.exitCode = 1;
    }
    const status = result.data?.tripUpdated.status;
    console.log(`status ${status}`); // the current state first, then each change
    if (result.error || ["COMPLETED", "CANCELED"].includes(status)) {
      unsubscribe();
      wsClient.dispose();
    }
  });
