export const ADMIN = { name: 'admin', password: 'admin-e2e-password' };
export const BOB = { name: 'bob', password: 'bob-e2e-password' };
