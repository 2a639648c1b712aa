// Signing in on either page: the sign-up / log-in form (with an optional photo), why the
// last session ended, the signed-in user's name and photo in the header, and log-out.
import { post, postFile } from "./http.js";
import { LOG_IN, logOut, save, session, takeEndedReason } from "./session.js";
import { $, busy, show, status } from "./ui.js";

const SIGN_UP = `mutation SignUp($input: SignUpInput!) { signUp(input: $input) { id } }`;

// The API's field names as the form labels them.
const LABELS = { username: "Username", password1: "Password", password2: "Password", firstName: "First name", lastName: "Last name", photo: "Photo" };

function explain(err) {
  const fields = err.fields
    ? " " + Object.entries(err.fields).map(([k, v]) => `${LABELS[k] || k}: ${v.join(" ")}`).join(" ")
    : "";
  return err.message + fields;
}

async function signUp(form, group) {
  const f = new FormData(form);
  const username = f.get("username");
  const password = f.get("password");
  const input = {
    username,
    firstName: f.get("firstName") || username,
    lastName: f.get("lastName") || "",
    password1: password,
    password2: password,
    group,
    photo: null,
  };
  const photo = f.get("photo");
  if (photo && photo.size) await postFile(SIGN_UP, { input }, "variables.input.photo", photo);
  else await post(SIGN_UP, { input });
}

// The form; resolves with the user once signed in as `group`.
export function signIn(group) {
  const current = session();
  if (current && current.user.group === group) return Promise.resolve(current.user);
  save(null);
  show($("#auth"), true);
  const ended = takeEndedReason();
  if (ended) status(ended, true);
  const form = $("#auth form");
  return new Promise((resolve) => {
    const submit = async (button, withSignUp) => {
      if (!form.reportValidity()) return;
      const label = withSignUp ? "Signing up…" : "Logging in…";
      await busy(
        button,
        label,
        async () => {
          if (withSignUp) await signUp(form, group);
          const f = new FormData(form);
          const data = await post(LOG_IN, { username: f.get("username"), password: f.get("password") });
          if (data.logIn.user.group !== group) {
            status(`${data.logIn.user.username} is a ${data.logIn.user.group.toLowerCase()}: use the other page.`, true);
            return;
          }
          save(data.logIn);
          show($("#auth"), false);
          status("");
          resolve(data.logIn.user);
        },
        explain,
      );
    };
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      submit($("#log-in"), false);
    });
    $("#sign-up").addEventListener("click", () => submit($("#sign-up"), true));
  });
}

// Name and photo (or the initial, without one) in the header, and the log-out button.
export function showUser(user) {
  $("#who").textContent = user.firstName ? `${user.firstName} (${user.username})` : user.username;
  const photo = $("#photo");
  if (user.photoUrl) {
    photo.src = user.photoUrl;
    photo.alt = `Photo of ${user.firstName || user.username}`;
    show(photo, true);
    show($("#initial"), false);
  } else {
    $("#initial").textContent = (user.firstName || user.username).slice(0, 1).toUpperCase();
    show($("#initial"), true);
  }
  const out = $("#log-out");
  show(out, true);
  out.addEventListener("click", () => busy(out, "Logging out…", logOut));
}
