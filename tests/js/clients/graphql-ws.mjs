// The graphql-ws client on its own: watch a trip live.
import { createClient } from "graphql-ws";
import WebSocket from "ws"; // Node.js 20 only: browsers and Node.js 22 have a WebSocket

import { accessToken, logIn } from "./tokens.mjs";

const WS_URL = (process.env.TAXI_URL ?? "http://127.0.0.1:8000/graphql").replace(/^http/, "ws");

const client = createClient({
  url: WS_URL,
  webSocketImpl: WebSocket,
  // A function: called on every (re)connection. When the token that opened the socket
  // expires the server closes it with 4403; graphql-ws reconnects, with a fresh token.
  connectionParams: async () => ({ Authorization: `Bearer ${await accessToken()}` }),
  on: { connected: () => console.log("connected") },
});

await logIn(process.env.TAXI_USERNAME, process.env.TAXI_PASSWORD);
const trips = client.iterate({
  query: "subscription ($id: ID!) { tripUpdated(id: $id) { id status } }",
  variables: { id: process.env.TAXI_TRIP },
});
for await (const { data, errors } of trips) {
  if (errors) throw new Error(errors[0].message);
  console.log(`status ${data.tripUpdated.status}`); // the current state first, then each change
  if (["COMPLETED", "CANCELED"].includes(data.tripUpdated.status)) break;
}
await client.dispose();
