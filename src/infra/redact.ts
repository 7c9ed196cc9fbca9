/**
 * Last line of defence for text that leaves the process (CLI errors, error messages): replaces the
 * value of every secret-bearing environment variable with "[redacted]". The logger redacts by path;
 * this catches a secret that slipped into free text.
 */
const SECRET_NAME = /TOKEN|SECRET|PASSWORD|AUTH|KEY/i;

export function secretValues(env: Readonly<Record<string, string | undefined>>): string[] {
  return Object.entries(env)
    .filter(([name, value]) => SECRET_NAME.test(name) && value !== undefined && value.length >= 6)
    .map(([, value]) => value as string)
    .sort((a, b) => b.length - a.length);
}

/**
 * Redacts bearer tokens, secret-named environment variables, and `extra` values (the tokens of the
 * policy file's accounts, whatever their variables are called).
 */
export function redactSecrets(
  text: string,
  env: Readonly<Record<string, string | undefined>>,
  extra: Iterable<string | undefined> = [],
): string {
  let out = text.replace(/(Bearer\s+)[A-Za-z0-9._~+/=-]+/g, "$1[redacted]");
  const values = [
    ...secretValues(env),
    ...[...extra].filter((v): v is string => v !== undefined && v.length >= 6),
  ];
  for (const value of values.sort((a, b) => b.length - a.length)) out = out.split(value).join("[redacted]");
  return out;
}

/** The tokens of a policy file's accounts, for `redactSecrets`. */
export function accountTokens(config: {
  accounts: ReadonlyMap<string, { token: string | undefined }>;
}): string[] {
  return [...config.accounts.values()].flatMap((account) => (account.token ? [account.token] : []));
}
