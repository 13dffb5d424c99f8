/** Sign in and sign up: two forms, one shown at a time. */
import * as api from "./api";
import { messageOf } from "./api";
import { byId } from "./dom";
import { clearError, showError } from "./notices";

const view = byId("auth-view");
const title = byId("auth-title");
const signInForm = byId<HTMLFormElement>("sign-in-form");
const signUpForm = byId<HTMLFormElement>("sign-up-form");
const sso = byId("sso");
const ssoLink = byId<HTMLAnchorElement>("sso-sign-in");

type Mode = "sign-in" | "sign-up";

function show(mode: Mode, { focus = true } = {}): void {
  signInForm.hidden = mode !== "sign-in";
  signUpForm.hidden = mode !== "sign-up";
  title.textContent = mode === "sign-in" ? "Sign in" : "Create an account";
  const form = mode === "sign-in" ? signInForm : signUpForm;
  if (focus) form.querySelector<HTMLInputElement>("input")?.focus();
}

function text(form: HTMLFormElement, name: string): string {
  return String(new FormData(form).get(name) ?? "").trim();
}

/** The browser's own checks (required, email, minimum length), reported in words. */
function invalidField(form: HTMLFormElement): string {
  for (const input of form.querySelectorAll<HTMLInputElement>("input")) {
    if (!input.checkValidity()) {
      const label = form.querySelector(`label[for="${input.id}"]`)?.textContent ?? input.name;
      input.focus();
      return `${label}: ${input.validationMessage}`;
    }
  }
  return "";
}

async function submit(form: HTMLFormElement, action: () => Promise<unknown>,
                      signedIn: () => void): Promise<void> {
  const problem = invalidField(form);
  if (problem) {
    showError(problem);
    return;
  }
  const button = form.querySelector<HTMLButtonElement>("button[type=submit]")!;
  button.disabled = true;
  try {
    await action();
    clearError();
    form.reset();
    signedIn();
  } catch (error) {
    showError(messageOf(error));
  } finally {
    button.disabled = false;
  }
}

export function setUpAuthView(signedIn: () => void): void {
  for (const button of view.querySelectorAll<HTMLButtonElement>("[data-show]")) {
    button.addEventListener("click", () => {
      clearError();
      show(button.dataset.show as Mode);
    });
  }
  signInForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const rememberMe = new FormData(signInForm).get("rememberMe") === "on";
    void submit(signInForm, () => api.signIn({
      email: text(signInForm, "email"), password: String(new FormData(signInForm).get("password")),
    }, rememberMe), signedIn);
  });
  signUpForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void submit(signUpForm, () => api.signUp({
      name: text(signUpForm, "name"), email: text(signUpForm, "email"),
      password: String(new FormData(signUpForm).get("password")),
    }), signedIn);
  });
  void offerSingleSignOn();
}

/**
 * "Sign in with <name>" when the deployment offers single sign-on: a plain link (the
 * browser goes to the issuer and comes back signed in), which carries "Keep me signed in".
 * Without an answer from the server there is no button; the password form still works.
 */
async function offerSingleSignOn(): Promise<void> {
  let options: api.SignInOptions;
  try {
    options = await api.signInOptions();
  } catch {
    return;
  }
  const oidc = options.oidc;
  if (!oidc) return;
  ssoLink.textContent = `Sign in with ${oidc.name}`;
  ssoLink.href = oidc.loginUrl;
  ssoLink.addEventListener("click", () => {
    const rememberMe = new FormData(signInForm).get("rememberMe") === "on";
    ssoLink.href = rememberMe ? `${oidc.loginUrl}?rememberMe=true` : oidc.loginUrl;
  });
  sso.hidden = false;
}

export function showAuthView(): void {
  view.hidden = false;
  show("sign-in", { focus: false }); // a page that just opened keeps its reading order
}

export function hideAuthView(): void {
  view.hidden = true;
}
