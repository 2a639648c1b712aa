// GraphQL over HTTP as the app speaks it: one JSON POST (or a multipart one for a photo
// upload, per the GraphQL multipart request spec), the first error thrown with its code.

export class ApiError extends Error {
  constructor(error) {
    super(error.message);
    this.code = error.extensions && error.extensions.code;
    this.fields = error.extensions && error.extensions.fields;
  }
}

async function answer(response) {
  const body = await response.json();
  if (body.errors && body.errors.length) throw new ApiError(body.errors[0]);
  return body.data;
}

export async function post(query, variables, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch("/graphql", {
    method: "POST",
    headers,
    body: JSON.stringify({ query, variables }),
  });
  return answer(response);
}

// `file` goes where `path` (e.g. "variables.input.photo") says; the variable itself is null.
export async function postFile(query, variables, path, file) {
  const form = new FormData();
  form.append("operations", JSON.stringify({ query, variables }));
  form.append("map", JSON.stringify({ 0: [path] }));
  form.append("0", file, file.name);
  // The header tells the server this is no cross-site form post (CSRF): browsers preflight it.
  const headers = { "Apollo-Require-Preflight": "true" };
  return answer(await fetch("/graphql", { method: "POST", headers, body: form }));
}
